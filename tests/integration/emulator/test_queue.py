"""Queued writes: without ``?_sync`` a write is applied ``queue_delay_ms`` after its response.

Both official integrations make ``_sync`` opt-in ("process … immediately instead of queuing. Only
enable this when you need to add an event for this contact in the next step"); the Ingest guide
says an event-only payload for a contact the datasource does not hold is dropped silently.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import requests

from airflow_provider_instasent.emulator import Emulator, running

from .conftest import ADMIN, QUEUE_DELAY_MS, Api, order

DELAY_S = QUEUE_DELAY_MS / 1000


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> float:
    """Seconds until ``check()`` is true (fails after ``timeout``)."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "condition never became true"
        time.sleep(0.02)
    return time.monotonic() - start


def known(api: Api, user_id: str) -> bool:
    return api.audience_by_user(user_id).status_code == 200


def test_default_is_no_queue(api: Api, emulator: Emulator) -> None:
    assert emulator.queue_state() == {"delay_ms": 0.0, "pending": 0}
    assert api.push_contacts([{"_user_id": "u1"}]).status_code == 202
    assert known(api, "u1")


def test_contact_write_without_sync_is_applied_after_the_delay(queued_api: Api) -> None:
    api = queued_api
    sent = time.monotonic()
    r = api.push_contacts([{"_user_id": "u1", "plan": "pro"}])
    assert r.status_code == 202 and r.json()["entitiesSuccess"] == 1  # validated and answered now
    assert not known(api, "u1")
    assert api.contact("u1").status_code == 404
    assert api.state()["contacts"]["dsapi"] == 0
    wait_for(lambda: known(api, "u1"))
    assert time.monotonic() - sent >= DELAY_S * 0.9
    # the audience (search, scroll, segments) is refreshed once the write is applied
    hits = api.post(
        api.p("/audience/search"),
        json={"root": {"type": "attribute_condition", "key": "plan", "operator": "eq", "values": ["pro"]}},
    ).json()
    assert hits["metadata"]["totalHits"] == 1
    assert api.get(api.p("/segment/pro_plan")).json()["entity"]["size"] == 1


def test_sync_applies_before_the_response(queued_api: Api) -> None:
    api = queued_api
    for query in ("?_sync", "?_sync=1", "?_sync=true"):
        uid = f"u{len(query)}"
        assert api.push_contacts([{"_user_id": uid}], query=query).status_code == 202
        assert known(api, uid), query


def test_event_for_a_contact_still_queued_is_dropped(queued_api: Api) -> None:
    api = queued_api
    api.push_contacts([{"_user_id": "late"}])  # queued
    r = api.push_events([order("e1", user_id="late")], query="?_sync")
    assert r.status_code == 202 and r.json()["entitiesSuccess"] == 1  # accepted ...
    wait_for(lambda: known(api, "late"))
    time.sleep(DELAY_S)
    assert api.state()["events"] == 0  # ... and never stored
    # the same event again, now that the contact is applied, is stored (the drop freed its id)
    api.push_events([order("e1", user_id="late")], query="?_sync")
    assert api.state()["events"] == 1


def test_queued_event_after_queued_contact_is_kept(queued_api: Api) -> None:
    # queued writes apply in order, so contact-then-event, both queued, keeps the event
    api = queued_api
    api.push_contacts([{"_user_id": "u1"}])
    api.push_events([order("e1")])
    assert api.state()["events"] == 0
    wait_for(lambda: api.state()["events"] == 1)


def test_contact_with_sync_then_event_without_sync(queued_api: Api) -> None:
    api = queued_api
    api.push_contacts([{"_user_id": "u1"}], query="?_sync")
    api.push_events([order("e1")])
    assert api.state()["events"] == 0
    wait_for(lambda: api.state()["events"] == 1)


def test_event_with_embedded_user_data_creates_its_contact(queued_api: Api) -> None:
    api = queued_api
    api.push_events([order("e1", user_id="new", _user_data={"plan": "pro"})])
    wait_for(lambda: api.state()["events"] == 1)
    assert known(api, "new")


def test_delete_and_audience_actions_are_queued_too(queued_api: Api) -> None:
    api = queued_api
    api.push_contacts([{"_user_id": "u1", "_phone_mobile": "+34600000001"}], query="?_sync")
    aid = api.audience_by_user("u1").json()["entity"]["id"]
    r = api.post(api.p("/audience/stream/sms-unsubscribe"), json={"audienceId": aid})
    assert r.status_code == 202 and r.json()["entity"]["status"] == "queued"
    assert "_is_subscribed_sms" not in api.audience_by_user("u1").json()["entity"]["attributesData"]
    wait_for(lambda: api.audience_by_user("u1").json()["entity"]["attributesData"].get("_is_subscribed_sms") is False)
    r = api.post(api.p("/audience/stream/sms-subscribe") + "?_sync=true", json={"audienceId": aid})
    assert r.json()["entity"]["status"] == "done"
    assert api.audience_by_user("u1").json()["entity"]["attributesData"]["_is_subscribed_sms"] is True
    assert api.delete(api.ds(path="/stream/contacts/u1")).status_code == 202
    assert known(api, "u1")
    wait_for(lambda: not known(api, "u1"))


def test_dry_run_is_never_queued_nor_applied(queued_api: Api) -> None:
    api = queued_api
    r = api.push_contacts([{"_user_id": "u1"}], query="?_dryRun")
    assert r.json()["dryRun"] is True
    time.sleep(DELAY_S * 1.5)
    assert not known(api, "u1")


def test_admin_queue_endpoints_flush_and_reset(queued_api: Api, emulator: Emulator) -> None:
    api = queued_api
    base = api.base_url + "/_emulator/queue"
    assert requests.get(base, timeout=10).json() == {"delay_ms": QUEUE_DELAY_MS, "pending": 0}
    emulator.set_queue_delay(60_000)  # long enough to observe the pending writes
    api.push_contacts([{"_user_id": "u1"}])
    api.push_events([order("e1")])
    assert requests.get(base, timeout=10).json()["pending"] == 2
    r = requests.post(base + "/flush", timeout=10).json()
    assert r["applied"] == 2 and r["pending"] == 0
    assert known(api, "u1") and api.state()["events"] == 1
    api.push_contacts([{"_user_id": "u2"}])
    requests.post(api.base_url + "/_emulator/reset", timeout=10).raise_for_status()
    assert requests.get(base, timeout=10).json() == {"delay_ms": 60_000, "pending": 0}  # kept, dropped
    assert requests.post(base, json={"delay_ms": -1}, timeout=10).status_code == 400
    assert requests.post(base, json={"nope": 1}, timeout=10).status_code == 400
    assert requests.post(base, json={"delay_ms": 0}, timeout=10).json() == {"delay_ms": 0, "pending": 0}
    assert api.push_contacts([{"_user_id": "u3"}]).status_code == 202 and known(api, "u3")


def test_cli_flag_and_python_option() -> None:
    with running(subprocess=True, queue_delay_ms=QUEUE_DELAY_MS) as url:
        state = requests.get(url + "/_emulator/queue", timeout=10).json()
        assert state == {"delay_ms": QUEUE_DELAY_MS, "pending": 0}
        api = Api(url, ADMIN)
        api.push_contacts([{"_user_id": "u1"}])
        assert not known(api, "u1")
        wait_for(lambda: known(api, "u1"))
