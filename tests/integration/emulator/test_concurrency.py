"""Many clients at once: no lost or duplicated writes."""

from __future__ import annotations

import threading

from .conftest import Api, order

THREADS = 8
BATCHES = 6


def test_concurrent_event_writes_exact_counts(api: Api) -> None:
    api.push_contacts([{"_user_id": f"u{i}"} for i in range(50)])
    errors: list[str] = []

    def worker(t: int) -> None:
        client = api.as_token("demo-admin-token")
        for b in range(BATCHES):
            batch = [order(f"t{t}-b{b}-{i}", user_id=f"u{i % 50}") for i in range(50)]  # disjoint ids
            batch += [order(f"shared-b{b}-{i}", user_id=f"u{i % 50}") for i in range(50)]  # overlapping ids
            r = client.push_events(batch)
            if r.status_code != 202 or r.json()["entitiesSuccess"] != 100:
                errors.append(r.text)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    expected = THREADS * BATCHES * 50 + BATCHES * 50
    assert api.state()["events"] == expected
    assert len(api.automations()) == expected
    events, _ = api.scroll_all("/event/scroll")
    assert len(events) == expected and len({e["_event_id"] for e in events}) == expected


def test_concurrent_contact_upserts_exact_counts(api: Api) -> None:
    def worker(t: int) -> None:
        client = api.as_token("demo-admin-token")
        for b in range(5):
            own = [{"_user_id": f"t{t}-{b}-{i}", "_email": f"t{t}-{b}-{i}@example.com"} for i in range(40)]
            shared = [{"_user_id": f"shared-{i}", "loyalty_points": t} for i in range(40)]
            client.push_contacts(own + shared, ds="dsapi" if t % 2 else "crm")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = api.state()
    assert state["contacts"] == {"dsapi": 4 * 5 * 40 + 40, "crm": 4 * 5 * 40 + 40}
    assert state["audience_contacts"] == THREADS * 5 * 40 + 40  # shared-* merge across both datasources
