"""Realistic sample data for the emulator's default ``demo`` project.

Used by the README's main job (``./dev demo``), the example DAGs' tests and the benchmarks.
Deterministic for a given seed. Two sources feed one audience, the way real projects look:

* a CRM export (datasource ``crm``): ``crm-<n>`` user ids, names, emails, phones in several
  formats, plan, loyalty points, birthday;
* a shop (datasource ``dsapi``, the e-commerce API datasource): ``shop-<n>`` user ids, some of
  which share an email or a phone with a CRM contact (so they merge in the unified audience),
  and some of which reuse the CRM user id itself;
* order and page-view events of the shop contacts over the last 90 days, plus a few events
  from the last half hour (those would fire automations);
* a sprinkle of bad rows: invalid emails and dates, missing required parameters, strings
  over ``maxLength``, too many values for a multi-value parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FIRST = ["Ada", "Grace", "Alan", "Linus", "Ana", "Lucía", "Jordi", "Marta", "Pau", "Noa", "Iker", "Sofía"]
LAST = ["Lovelace", "Hopper", "Turing", "García", "Martínez", "López", "Puig", "Serra", "Vidal", "Roca"]
PLANS = ["free", "basic", "pro"]
CURRENCIES = ["EUR", "USD", "GBP"]


@dataclass(frozen=True)
class SampleFiles:
    crm_contacts: Path
    shop_contacts: Path
    orders: Path
    page_views: Path
    counts: dict[str, int]


def _phones(rng: np.random.Generator, idx: np.ndarray) -> list[str]:
    """Phones for contact numbers ``idx``, written in several formats (same underlying number)."""
    out = []
    for i, style in zip(idx.tolist(), rng.integers(0, 4, len(idx)).tolist()):
        digits = f"6{i:08d}"
        out.append([f"+34{digits}", f"+34 {digits[:3]} {digits[3:6]} {digits[6:]}", f"0034{digits}",
                    f"+34-{digits}"][style])
    return out


def crm_contacts(n: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    first = np.array(FIRST)[rng.integers(0, len(FIRST), n)]
    last = np.array(LAST)[rng.integers(0, len(LAST), n)]
    email = [f"person{i}@example.com" for i in idx.tolist()]
    birthday = [
        (datetime(1950, 1, 1) + timedelta(days=int(d))).strftime("%Y-%m-%d")
        for d in rng.integers(0, 365 * 55, n)
    ]
    # bad rows: ~0.3% invalid email, ~0.2% impossible birthday
    for i in rng.choice(n, max(1, n // 300), replace=False).tolist():
        email[i] = f"person{i}-at-example.com"
    for i in rng.choice(n, max(1, n // 500), replace=False).tolist():
        birthday[i] = "1990-13-45"
    return pa.table({
        "_user_id": [f"crm-{i}" for i in idx.tolist()],
        "_first_name": first.tolist(),
        "_last_name": last.tolist(),
        "_email": email,
        "_phone_mobile": _phones(rng, idx),
        "plan": np.array(PLANS)[rng.integers(0, 3, n)].tolist(),
        "loyalty_points": rng.integers(0, 5000, n).astype("float64"),
        "birthday": birthday,
    })


def shop_contacts(n: int, n_crm: int, seed: int = 11) -> pa.Table:
    """Shop contacts: 30% share an email with a CRM contact, 15% a phone, 10% the CRM user id."""
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    kind = rng.random(n)
    crm_match = rng.integers(0, max(1, n_crm), n)
    user_id: list[str] = []
    email: list[str] = []
    phone: list[str | None] = []
    for i, k, m in zip(idx.tolist(), kind.tolist(), crm_match.tolist()):
        if k < 0.10:
            user_id.append(f"crm-{m}")
            email.append(f"person{m}@example.com")
            phone.append(None)
        elif k < 0.40:
            user_id.append(f"shop-{i}")
            email.append(f"Person{m}@Example.com")  # same email, different case
            phone.append(None)
        elif k < 0.55:
            user_id.append(f"shop-{i}")
            email.append(f"buyer{i}@shop.example")
            phone.append(f"+346{m:08d}")
        else:
            user_id.append(f"shop-{i}")
            email.append(f"buyer{i}@shop.example")
            phone.append(f"+347{i:08d}")
    return pa.table({
        "_user_id": user_id,
        "_first_name": np.array(FIRST)[rng.integers(0, len(FIRST), n)].tolist(),
        "_email": email,
        "_phone_mobile": pa.array(phone, pa.string()),
        "plan": np.array(PLANS)[rng.integers(0, 3, n)].tolist(),
    })


def _event_dates(rng: np.random.Generator, n: int, now: datetime, recent_share: float) -> pa.Array:
    """Mostly the last 90 days; ``recent_share`` of them within the last 30 minutes."""
    now_ms = int(now.timestamp() * 1000)
    back = rng.integers(2 * 3600 * 1000, 90 * 86400 * 1000, n)
    recent = rng.random(n) < recent_share
    back[recent] = rng.integers(0, 30 * 60 * 1000, int(recent.sum()))
    return pa.array(now_ms - back, pa.timestamp("ms", tz="UTC"))


def orders(user_ids: list[str], n: int, seed: int = 13, now: datetime | None = None,
           recent_share: float = 0.002) -> pa.Table:
    rng = np.random.default_rng(seed)
    now = now or datetime.now(UTC)
    users = np.array(user_ids)[rng.integers(0, len(user_ids), n)]
    order_id = [f"ORD-{seed}-{i:08d}" for i in range(n)]
    event_id = [f"order-{o}" for o in order_id]
    amount = np.round(rng.gamma(2.0, 30.0, n), 2)
    currency = np.array(CURRENCIES)[rng.integers(0, 3, n)].tolist()
    items = [[f"SKU-{x}" for x in rng.integers(0, 500, k).tolist()] for k in rng.integers(1, 5, n).tolist()]
    bad = rng.choice(n, max(4, n // 250), replace=False)
    mask = np.zeros(n, dtype=bool)
    for j, i in enumerate(bad.tolist()):
        kind = j % 4
        if kind == 0:
            mask[i] = True  # missing required amount
        elif kind == 1:
            order_id[i] = "X" * 80  # over maxLength 64
        elif kind == 2:
            currency[i] = "EURO"  # over maxLength 3
        else:
            items[i] = [f"SKU-{x}" for x in range(12)]  # over multiValue 10
    amount_arr = pa.array(np.where(mask, np.nan, amount), pa.float64(), from_pandas=True)
    return pa.table({
        "_event_id": event_id,
        "_user_id": users.tolist(),
        "_event_date": _event_dates(rng, n, now, recent_share),
        "order_id": order_id,
        "amount": amount_arr,
        "currency": currency,
        "items": pa.array(items, pa.list_(pa.string())),
    })


def page_views(user_ids: list[str], n: int, seed: int = 17, now: datetime | None = None) -> pa.Table:
    rng = np.random.default_rng(seed)
    now = now or datetime.now(UTC)
    users = np.array(user_ids)[rng.integers(0, len(user_ids), n)]
    paths = ["/", "/shoes", "/shoes/red", "/cart", "/checkout", "/blog/summer", "/account"]
    url = [f"https://shop.example{paths[k]}?ref={r}" for k, r in
           zip(rng.integers(0, len(paths), n).tolist(), rng.integers(0, 100, n).tolist())]
    return pa.table({
        "_event_id": [f"pv-{seed}-{i:09d}" for i in range(n)],
        "_user_id": users.tolist(),
        "_event_date": _event_dates(rng, n, now, 0.0),
        "url": url,
    })


def write_sample(directory: str | Path, *, n_crm: int = 20_000, n_shop: int = 15_000,
                 n_orders: int = 100_000, n_page_views: int = 150_000, seed: int = 7) -> SampleFiles:
    """Write the whole sample as Parquet files under ``directory``; return their paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    crm = crm_contacts(n_crm, seed)
    shop = shop_contacts(n_shop, n_crm, seed + 4)
    shop_ids = list(shop.column("_user_id").to_pylist())
    files = SampleFiles(out / "contacts_crm.parquet", out / "contacts_shop.parquet", out / "orders.parquet",
                        out / "page_views.parquet",
                        {"crm_contacts": n_crm, "shop_contacts": n_shop, "orders": n_orders,
                         "page_views": n_page_views})
    pq.write_table(crm, files.crm_contacts, row_group_size=10_000)
    pq.write_table(shop, files.shop_contacts, row_group_size=10_000)
    pq.write_table(orders(shop_ids, n_orders, seed + 6), files.orders, row_group_size=50_000)
    pq.write_table(page_views(shop_ids, n_page_views, seed + 10), files.page_views, row_group_size=50_000)
    return files
