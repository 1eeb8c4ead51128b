"""The store's fast paths (issue 19) against the rules they shortcut.

The audience index builds a contact that shares no merge key with another without walking
the graph; these tests drive the store with random writes that merge, re-merge and split
contacts (by ``_user_id`` across datasources, by email and by phone, transitively) and compare
every audience contact with connected components computed from scratch. A reset must free the
old store by reference counting alone (no reference cycle keeps it alive). The validator compiled
from the specs answers every item as the reference validation does.
"""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys
from typing import Any

import pytest

from airflow_provider_instasent.emulator.audience import merge_values
from airflow_provider_instasent.emulator.fixture import load_fixture
from airflow_provider_instasent.emulator.store import Store
from airflow_provider_instasent.emulator.validation import Validator, iso_ms, validate_contact, validate_event


def _components(ps: Any) -> set[frozenset[tuple[str, str]]]:
    """Connected components of the datasource contacts, from scratch (union-find)."""
    parent: dict[tuple[str, str], tuple[str, str]] = {k: k for k in ps.audience.contacts}

    def find(k: tuple[str, str]) -> tuple[str, str]:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    owner: dict[tuple[str, str], tuple[str, str]] = {}
    for key, contact in ps.audience.contacts.items():
        marks = [("_user_id", key[1])]
        for attr in ps.audience.merging:
            if attr != "_user_id" and contact.data.get(attr) is not None:
                marks += [(attr, v) for v in merge_values(attr, contact.data[attr])]
        for mark in marks:
            if mark in owner:
                parent[find(key)] = find(owner[mark])
            else:
                owner[mark] = key
    groups: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for key in ps.audience.contacts:
        groups.setdefault(find(key), set()).add(key)
    return {frozenset(g) for g in groups.values()}


def test_random_merges_and_splits_match_connected_components() -> None:
    rng = random.Random(19)
    store = Store(load_fixture())
    ps = store.projects["demo"]
    datasources = [d for d in ps.datasources if ps.datasources[d].config.type == "api"] or list(ps.datasources)
    emails = [f"p{i}@Example.com" for i in range(12)]
    phones = [f"+34 600 000 {i:03d}" for i in range(12)]
    for step in range(600):
        ds = ps.datasources[rng.choice(datasources)]
        item: dict[str, Any] = {"_user_id": f"u{rng.randrange(40)}"}
        roll = rng.random()
        if roll < 0.3:
            item["_email"] = rng.choice(emails).upper() if rng.random() < 0.5 else rng.choice(emails)
        elif roll < 0.5:
            item["_phone_mobile"] = rng.choice(phones)
        elif roll < 0.6:
            item["_email"] = None  # unsetting a merge key can split a component
        elif roll < 0.65:
            store.delete_contact(ps, ds, item["_user_id"], dry_run=False)
            continue
        item["plan"] = f"plan-{step}"
        outcome = store.push_contacts(ps, ds, [item], dry_run=False)
        assert outcome.accepted == [0], outcome.errors
        if step % 50 == 49:
            want = _components(ps)
            got = {frozenset(m.key for m in c.members) for c in ps.audience.audience.values()}
            assert got == want
            for aid, contact in ps.audience.audience.items():
                assert all(ps.audience.member_of[m.key] == aid for m in contact.members)
                # the highest-priority datasource's non-null value wins, then the latest update
                best = sorted(contact.members, key=lambda m: (ps.priority(m.key[0]), -m.update_seq))
                assert contact.attrs["plan"] == next(m.data["plan"] for m in best if "plan" in m.data)
                # every member's own audience id leads to its component (the merged-away ones too)
                assert all(ps.audience.resolve(m.origin_aid) is contact for m in contact.members)
                assert contact.attrs["_date_updated"] == iso_ms(contact.updated_at)
            # the merge index answers lookups as a scan of the data does
            for attr, values in (("_email", emails), ("_phone_mobile", phones)):
                for value in values:
                    holders = {k for k, c in ps.audience.contacts.items()
                               if merge_values(attr, value)[0] in merge_values(attr, c.data.get(attr))}
                    found = {c.id for c in ps.audience.find(attr, value)}
                    assert found == {ps.audience.member_of[k] for k in holders}


def test_contact_data_starts_with_user_id_and_keeps_omitted_values() -> None:
    store = Store(load_fixture())
    ps = store.projects["demo"]
    ds = ps.datasources["dsapi"]
    first = {"_first_name": "Ana", "plan": "gold", "_email": None, "_user_id": "order"}
    assert store.push_contacts(ps, ds, [first], dry_run=False).stored == 1
    contact = ps.audience.contacts[("dsapi", "order")]
    assert list(contact.data)[:3] == ["_user_id", "_first_name", "plan"]
    assert "_email" not in contact.data  # a null on a new contact: nothing to unset
    aid = ps.audience.member_of[contact.key]
    assert ps.audience.audience[aid].attrs == {**contact.data, "_full_name": "Ana"}
    assert store.push_contacts(ps, ds, [{"_user_id": "order", "plan": None}], dry_run=False).stored == 1
    contact = ps.audience.contacts[("dsapi", "order")]
    assert "plan" not in contact.data  # an explicit null clears
    assert contact.data["_first_name"] == "Ana"  # an omitted attribute is kept
    assert ps.audience.audience[aid].attrs["_full_name"] == "Ana"


_RESET_PROBE = """
import gc
from airflow_provider_instasent.emulator import store as store_mod
from airflow_provider_instasent.emulator.fixture import load_fixture
from airflow_provider_instasent.emulator.store import Event, Store

store = Store(load_fixture())
ps = store.projects["demo"]
ds = ps.datasources["dsapi"]
store.push_contacts(ps, ds, [{"_user_id": f"r{i}", "_email": f"r{i}@x.io"} for i in range(50)], dry_run=False)
events = [{"_user_id": f"r{i % 50}", "_event_id": f"reset-probe-{i}", "_event_type": "ecommerce_order_create",
           "_event_date": "2025-03-01T10:00:00.000Z",
           "_event_parameters": {"order_id": f"o{i}", "amount": 1.5, "currency": "EUR", "items": ["a"]}}
          for i in range(100)]
assert store.push_events(ps, ds, events, dry_run=False).stored == 100
old_config = ps.config
del ps, ds, events  # only the store holds the old state now
gc.disable()
store.reset()
alive = sum(1 for o in gc.get_objects() if isinstance(o, Event))
stale = [o for o in gc.get_objects() if isinstance(o, store_mod.ProjectState)
         and o.config is old_config and o not in store.projects.values()]
print(alive, len(stale))
"""


def test_a_reset_frees_the_old_store_without_a_garbage_collection() -> None:
    # In a fresh interpreter: in a test worker, other tests' objects (and their cycles) share
    # the heap and could hold an old event by chance.
    out = subprocess.run([sys.executable, "-c", _RESET_PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    alive, stale = map(int, out.stdout.split())
    assert alive == 0  # every old event was freed at once, by reference counting alone
    assert stale == 0


def test_an_event_date_keeps_its_milliseconds_as_sent() -> None:
    store = Store(load_fixture())
    ps = store.projects["demo"]
    ds = ps.datasources["dsapi"]
    store.push_contacts(ps, ds, [{"_user_id": "d"}], dry_run=False)
    dates = ["2025-03-01T10:00:00.123Z", "2025-03-01T10:00:00.999Z", "2025-03-01T12:00:00+02:00"]
    items = [{"_user_id": "d", "_event_id": f"d{i}", "_event_type": "ecommerce_order_create", "_event_date": d,
              "_event_parameters": {"order_id": "o", "amount": 1, "currency": "EUR"}} for i, d in enumerate(dates)]
    assert store.push_events(ps, ds, items, dry_run=False).stored == 3
    got = sorted(e.date_iso for e in ps.events.values() if e.user_id == "d")
    assert got == ["2025-03-01T10:00:00.000Z", "2025-03-01T10:00:00.123Z", "2025-03-01T10:00:00.999Z"]


# Values of every form the validator meets: valid, invalid, converted (numeric and boolean
# strings, a scalar for a multi-valued field), null, and of the wrong type.
_VALUES: list[Any] = [
    None, "", " ", "plain", "x" * 70, "ñandú", 0, 1, 2, -3, 1.5, float("inf"), float("nan"), True, False,
    "120", "49.90", "1e3", "NaN", "true", "0", "yes", [], ["a", "b"], ["a", None], ["a", 1], ["x"] * 60, {}, {"a": 1},
    "a@b.io", " A@B.io ", "a@@b", "x" * 250 + "@b.io", "+34 600-000-001", "0034600000001", "001234", "12",
    "+34(600)000001", "2024-02-29", "2023-02-29", "1990-13-45", "2024-01-01T10:00:00Z", "2024-01-01T10:00:00",
]
_ATTRS = ["_user_id", "_first_name", "_email", "_phone_mobile", "_client_tags", "_date_imported", "_date_seen",
          "_accepts_marketing_sms", "plan", "loyalty_points", "birthday", "unknown", "_unknown"]
_VALID: dict[str, Any] = {"_first_name": "Ana", "_email": "ana@x.io", "_phone_mobile": "+34 600 000 001",
                          "_client_tags": ["a", "b"], "_date_seen": "2024-02-29", "_accepts_marketing_sms": True,
                          "plan": "pro", "loyalty_points": 3.5, "birthday": "1990-01-31", "unknown": "u"}
_DATES: list[Any] = [None, "2025-03-01T10:00:00.000Z", "2025-03-01T10:00:00.123Z", "2025-13-01T10:00:00.000Z",
                     "2025-03-01T12:00:00+02:00", "2025-03-01T10:00:00", "2025-03-01", "yesterday", 17, "2025-03-01T10:00:00.000+00:00"]
_PARAMS = ["order_id", "amount", "currency", "items", "url", "other"]
_IDS: list[Any] = ["u1", " u1", "u1 ", "", " ", None, 7, 7.0, 7.5, True, "x" * 256, ["u1"]]


def _random_contact(rng: random.Random) -> Any:
    if rng.random() < 0.02:
        return rng.choice([None, "u1", ["u1"], 3])
    item = {"_user_id": rng.choice(_IDS) if rng.random() < 0.3 else f"u{rng.randrange(5)}"}
    if rng.random() < 0.05:
        del item["_user_id"]
    valid = rng.random() < 0.5
    for attr in rng.sample(_ATTRS, rng.randrange(len(_ATTRS))):
        if attr != "_user_id" and not (valid and attr not in _VALID):
            item[attr] = _VALID[attr] if valid and rng.random() < 0.9 else rng.choice(_VALUES)
    return item


def _random_event(rng: random.Random) -> Any:
    if rng.random() < 0.02:
        return rng.choice([None, "e", [1]])
    item: dict[str, Any] = {
        "_user_id": rng.choice(_IDS) if rng.random() < 0.1 else "u1",
        "_event_id": rng.choice(_IDS) if rng.random() < 0.1 else f"e{rng.randrange(1000)}",
        "_event_type": rng.choice(["page_view", "nope", None, 3]) if rng.random() < 0.2 else "ecommerce_order_create",
    }
    for key in list(item):
        if rng.random() < 0.02:
            del item[key]
    if rng.random() < 0.8:
        item["_event_date"] = rng.choice(_DATES)
    roll = rng.random()
    if roll < 0.7:
        item["_event_parameters"] = {p: rng.choice(_VALUES) for p in rng.sample(_PARAMS, rng.randrange(len(_PARAMS)))}
        if rng.random() < 0.7:  # a valid order most of the time
            item["_event_parameters"] = {"order_id": "o1", "amount": rng.choice([1, 2.5, "3"]), "currency": "EUR",
                                         "items": ["a", "b"], **item["_event_parameters"]} if rng.random() < 0.5 else {
                                         "order_id": "o1", "amount": 2, "items": rng.choice([["a"], "a", [], None])}
    elif roll < 0.8:
        item["_event_parameters"] = rng.choice([None, [], "x"])
    if rng.random() < 0.3:
        user = _random_contact(rng)
        if isinstance(user, dict) and rng.random() < 0.7:
            user["_user_id"] = item.get("_user_id") if rng.random() < 0.8 else "other"
        item["_user_data"] = user
    if rng.random() < 0.05:
        item["_extra"] = 1
    return item


@pytest.mark.parametrize("accept_unknown", [False, True])
def test_the_compiled_validator_answers_as_the_reference_one(accept_unknown: bool) -> None:
    """``Validator`` (the hot path) against ``validate_contact`` / ``validate_event``: the same
    item, or the same errors in the same words, for thousands of items of every form."""
    config = dataclasses.replace(load_fixture().projects["demo"], accept_unknown_attributes=accept_unknown)
    validator = Validator(config)
    rng = random.Random(19)
    accepted = 0
    for _ in range(20_000):
        item = _random_contact(rng)
        got, want = validator.contact(item), validate_contact(item, config)
        assert got == want, item
        accepted += got[0] is not None
    assert accepted > 2_000  # the valid forms were met too, not only errors
    accepted = 0
    for _ in range(20_000):
        item = _random_event(rng)
        got_e, want_e = validator.event(item, 1.7e9, "2023-11-14T22:13:20.000Z"), validate_event(
            item, config, 1.7e9, "2023-11-14T22:13:20.000Z")
        assert got_e == want_e, item
        accepted += got_e[0] is not None
    assert accepted > 1_000  # the valid forms were met too, not only errors
    batch = [_random_event(rng) for _ in range(300)]  # the push's loop answers as the item's
    at, at_iso = 1.7e9, "2023-11-14T22:13:20.000Z"
    assert validator.events(batch, at, at_iso) == [validate_event(item, config, at, at_iso) for item in batch]
