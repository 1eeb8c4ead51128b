"""A seeded source dataset whose expected outcome is known row by row.

``build(n_contacts, n_events, seed)`` returns contacts and events (Arrow tables, the form a
Parquet file or a warehouse query gives the loader) with about 1% invalid rows of known
kinds, plus what must happen to every row:

* every invalid row is in ``bad_contacts`` / ``bad_events`` as ``row -> (field, reason)``
  (the reason is a substring of the loader's message);
* every valid contact must be stored exactly once, with the values of ``contact_values``;
* every valid event whose ``_user_id`` is a stored contact is accepted and stored
  (``stored_event_ids``); a valid event of any other user is rejected by the contact check
  ("contact … does not exist in datasource …", docs/ingest.md): ``event_rejects`` holds both
  kinds of event rejects, ``accepted_event_rows`` the rest.

Events mix two types in one frame (``_event_type`` column) and carry an ``_event_id``
column; ``page_views`` builds events without one (ids derived from the content).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

ORDER = "ecommerce_order_create"
PAGE_VIEW = "page_view"
FIRST = ["Ada", "Grace", "Lucía", "Jordi", "Noa", "Iñaki", "Zoë", "Łukasz"]
PLANS = ["free", "basic", "pro"]

CONTACT_FAULTS: tuple[tuple[str, str], ...] = (
    ("_email", "not an email address"),
    ("birthday", "not a date (YYYY-MM-DD)"),
    ("loyalty_points", "not a finite number"),
    ("_phone_mobile", "not a phone number"),
    ("_client_tags", "more than 50 values"),
    ("_user_id", "required (missing or empty)"),
)
EVENT_FAULTS: tuple[tuple[str, str], ...] = (
    ("_event_parameters.amount", "required parameter is missing"),
    ("_event_parameters.order_id", "longer than maxLength 64"),
    ("_event_parameters.currency", "longer than maxLength 3"),
    ("_event_parameters.items", "more than 10 values"),
    ("_event_parameters.url", "required parameter is missing"),
    ("_event_date", "not an ISO 8601 date-time"),
    ("_event_id", "required (missing or empty)"),
)


@dataclass
class Dataset:
    contacts: pa.Table
    events: pa.Table
    bad_contacts: dict[int, tuple[str, str]]
    bad_events: dict[int, tuple[str, str]]
    contact_values: dict[str, dict[str, Any]] = field(repr=False)
    valid_event_rows: list[int] = field(repr=False)
    stored_event_ids: set[str] = field(repr=False)

    @property
    def valid_user_ids(self) -> set[str]:
        return set(self.contact_values)

    @property
    def event_rejects(self) -> dict[int, tuple[str, str]]:
        """Every event row the loader rejects: invalid rows, and valid rows whose contact is not stored."""
        users = self.events.column("_user_id").to_pylist()
        orphans = {row: ("_user_id", "does not exist in datasource") for row in self.valid_event_rows
                   if users[row] not in self.contact_values}
        return dict(sorted({**self.bad_events, **orphans}.items()))

    @property
    def accepted_event_rows(self) -> list[int]:
        rejected = self.event_rejects
        return [row for row in range(self.events.num_rows) if row not in rejected]


def _phone(i: int, style: int) -> str:
    digits = f"6{i:08d}"
    return [f"+34{digits}", f"+34 {digits[:3]} {digits[3:6]} {digits[6:]}", f"0034{digits}",
            f"+34-{digits}", f"(+34) {digits[:3]}.{digits[3:6]}.{digits[6:]}"][style]


def _bad_rows(rng: np.random.Generator, n: int, share: float, kinds: int) -> dict[int, int]:
    """``row -> fault kind`` for ``share`` of ``n`` rows (at least one row of every kind)."""
    count = max(kinds, int(n * share))
    rows = rng.choice(n, count, replace=False).tolist()
    return {row: j % kinds for j, row in enumerate(rows)}


def build(n_contacts: int, n_events: int, seed: int = 1, *, bad_share: float = 0.01,
          ghost_share: float = 0.03) -> Dataset:
    rng = np.random.default_rng(seed)

    # -- contacts ---------------------------------------------------------------------------
    user_ids = [f"u{i:06d}" for i in range(n_contacts)]
    first = [FIRST[k] for k in rng.integers(0, len(FIRST), n_contacts).tolist()]
    email = [f"user{i}@example.com" for i in range(n_contacts)]
    phone = [_phone(i, s) for i, s in zip(range(n_contacts), rng.integers(0, 5, n_contacts).tolist())]
    plan = [PLANS[k] for k in rng.integers(0, 3, n_contacts).tolist()]
    points = [float(p) + 0.5 for p in rng.integers(0, 5000, n_contacts).tolist()]
    birthday = [f"{1950 + y}-{1 + m:02d}-{1 + d:02d}" for y, m, d in
                zip(rng.integers(0, 55, n_contacts).tolist(), rng.integers(0, 12, n_contacts).tolist(),
                    rng.integers(0, 28, n_contacts).tolist())]
    tags = [[f"t{(i + j) % 7}" for j in range(k)] for i, k in
            zip(range(n_contacts), rng.integers(1, 4, n_contacts).tolist())]
    bad_contact_kinds = _bad_rows(rng, n_contacts, bad_share, len(CONTACT_FAULTS))
    for row, kind in bad_contact_kinds.items():
        if kind == 0:
            email[row] = f"user{row}-at-example.com"
        elif kind == 1:
            birthday[row] = "2023-02-29"
        elif kind == 2:
            points[row] = float("inf")
        elif kind == 3:
            phone[row] = "12-34"
        elif kind == 4:
            tags[row] = [f"t{j}" for j in range(51)]
        else:
            user_ids[row] = ""
    contacts = pa.table({
        "_user_id": pa.array(user_ids, pa.string()),
        "_first_name": pa.array(first, pa.string()),
        "_email": pa.array(email, pa.string()),
        "_phone_mobile": pa.array(phone, pa.string()),
        "plan": pa.array(plan, pa.string()),
        "loyalty_points": pa.array(points, pa.float64()),
        "birthday": pa.array(birthday, pa.string()),
        "_client_tags": pa.array(tags, pa.list_(pa.string())),
    })
    bad_contacts = {row: CONTACT_FAULTS[kind] for row, kind in bad_contact_kinds.items()}
    contact_values = {
        user_ids[i]: {"_first_name": first[i], "_email": email[i], "_phone_mobile": phone[i], "plan": plan[i],
                      "loyalty_points": points[i], "birthday": birthday[i], "_client_tags": tags[i]}
        for i in range(n_contacts) if i not in bad_contacts
    }
    valid_users = list(contact_values)

    # -- events -----------------------------------------------------------------------------
    is_order = (rng.random(n_events) < 0.8).tolist()
    bad_event_kinds = _bad_rows(rng, n_events, bad_share, len(EVENT_FAULTS))
    for row, kind in bad_event_kinds.items():
        if kind <= 3:
            is_order[row] = True
        elif kind == 4:
            is_order[row] = False
    all_users = [u for u in user_ids if u]
    picks = rng.integers(0, len(all_users), n_events).tolist()
    ghosts = (rng.random(n_events) < ghost_share).tolist()
    ev_user = [f"ghost-{i}" if g else all_users[p] for i, (p, g) in enumerate(zip(picks, ghosts))]
    ev_id = [f"e{seed}-{i:07d}" for i in range(n_events)]
    minutes = rng.integers(0, 60 * 24 * 365, n_events).tolist()
    offsets = ["Z", "+00:00", "+02:00", "-05:30"]
    ev_date = []
    for i, m in enumerate(minutes):
        day, rest = divmod(m, 60 * 24)
        month, dom = divmod(day % 336, 28)
        ev_date.append(f"2024-{1 + month:02d}-{1 + dom:02d}T{rest // 60:02d}:{rest % 60:02d}:{i % 60:02d}"
                       f"{offsets[i % 4]}")
    order_id: list[str | None] = []
    amount: list[float | None] = []
    currency: list[str | None] = []
    items: list[list[str] | None] = []
    url: list[str | None] = []
    amounts = np.round(rng.gamma(2.0, 30.0, n_events), 2).tolist()
    n_items = rng.integers(1, 4, n_events).tolist()
    for i in range(n_events):
        if is_order[i]:
            order_id.append(f"ORD-{seed}-{i:07d}")
            amount.append(amounts[i])
            currency.append("EUR" if i % 3 else "USD")
            items.append([f"SKU-{(i * 7 + j) % 500}" for j in range(n_items[i])])
            url.append(None)
        else:
            order_id.append(None)
            amount.append(None)
            currency.append(None)
            items.append(None)
            url.append(f"https://shop.example/p/{i % 997}?ref={i}")
    for row, kind in bad_event_kinds.items():
        if kind == 0:
            amount[row] = None
        elif kind == 1:
            order_id[row] = "X" * 70
        elif kind == 2:
            currency[row] = "EURO"
        elif kind == 3:
            items[row] = [f"SKU-{j}" for j in range(11)]
        elif kind == 4:
            url[row] = None
        elif kind == 5:
            ev_date[row] = "2024-13-01T00:00:00Z"
        else:
            ev_id[row] = "  "
    events = pa.table({
        "_event_id": pa.array(ev_id, pa.string()),
        "_user_id": pa.array(ev_user, pa.string()),
        "_event_type": pa.array([ORDER if o else PAGE_VIEW for o in is_order], pa.string()),
        "_event_date": pa.array(ev_date, pa.string()),
        "order_id": pa.array(order_id, pa.string()),
        "amount": pa.array(amount, pa.float64()),
        "currency": pa.array(currency, pa.string()),
        "items": pa.array(items, pa.list_(pa.string())),
        "url": pa.array(url, pa.string()),
    })
    bad_events = {row: EVENT_FAULTS[kind] for row, kind in bad_event_kinds.items()}
    valid_rows = [i for i in range(n_events) if i not in bad_events]
    stored = {ev_id[i] for i in valid_rows if ev_user[i] in contact_values}
    assert valid_users, "the dataset needs valid contacts"
    return Dataset(contacts, events, bad_contacts, bad_events, contact_values, valid_rows, stored)


def page_views(user_ids: list[str], n: int, seed: int = 3) -> pa.Table:
    """Valid ``page_view`` events without an ``_event_id`` column: ids are derived from the content."""
    rng = np.random.default_rng(seed)
    users = [user_ids[k] for k in rng.integers(0, len(user_ids), n).tolist()]
    return pa.table({
        "_user_id": users,
        "_event_date": pa.array([f"2024-05-{1 + i % 28:02d}T10:{i % 60:02d}:{(i // 60) % 60:02d}Z" for i in range(n)]),
        "url": [f"https://shop.example/a/{i}" for i in range(n)],
    })
