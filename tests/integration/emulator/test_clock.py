"""The emulator's clock (``/_emulator/clock``) and the relative date filters that read it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from .conftest import Api, order


def clock(api: Api, body: dict[str, Any] | None = None) -> requests.Response:
    url = api.base_url + "/_emulator/clock"
    return requests.post(url, json=body, timeout=30) if body is not None else requests.get(url, timeout=30)


def now_of(api: Api) -> float:
    return datetime.fromisoformat(clock(api).json()["now"].replace("Z", "+00:00")).timestamp()


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_clock_reads_moves_and_resets(api: Api) -> None:
    assert abs(now_of(api) - time.time()) < 2
    moved = clock(api, {"advance_s": 3 * 86400})
    assert moved.status_code == 200, moved.text
    assert abs(now_of(api) - (time.time() + 3 * 86400)) < 2
    assert clock(api, {"now": "2030-01-02T03:04:05Z"}).status_code == 200
    assert abs(now_of(api) - datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()) < 2
    # the Date header of every /v1 response follows it
    date = parsedate_to_datetime(api.get("/").headers["Date"]).timestamp()
    assert abs(date - datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()) < 3
    assert requests.post(api.base_url + "/_emulator/reset", timeout=30).status_code == 200
    assert abs(now_of(api) - time.time()) < 2


def test_clock_refuses_bad_bodies(api: Api) -> None:
    for body in ({}, {"advance_s": "1"}, {"advance_s": True}, {"now": "2030-01-02"}, {"now": "soon"},
                 {"advance_s": 1, "now": "2030-01-02T00:00:00Z"}, {"speed": 2}):
        r = clock(api, body)
        assert r.status_code == 400, (body, r.text)
    assert requests.delete(api.base_url + "/_emulator/clock", timeout=30).status_code == 405


def test_server_set_dates_follow_the_clock(api: Api) -> None:
    clock(api, {"now": "2030-06-01T12:00:00Z"})
    api.push_contacts([{"_user_id": "u1"}])
    contact = api.audience_by_user("u1").json()["entity"]
    noon = datetime(2030, 6, 1, 12, tzinfo=UTC).timestamp()
    assert abs(ts(contact["attributesData"]["_date_updated"]) - noon) < 5
    api.push_events([order("e1")])  # no _event_date: the clock's now
    events, _ = api.scroll_all("/event/scroll")
    assert abs(ts(events[0]["_event_date"]) - noon) < 5
    assert abs(ts(events[0]["receivedAt"]) - noon) < 5
    # the +-1 h automation window is measured on the clock: an event dated real "now" is
    # years before the clock's now and fires nothing
    api.push_events([order("e2", _event_date=datetime.now(UTC).isoformat())])
    assert [a["_event_id"] for a in api.automations()] == ["e1"]


def test_rate_limit_windows_follow_the_clock(api: Api) -> None:
    api.faults(rate_limit=60)  # one request a second, bucket of one
    assert api.get(api.p()).status_code == 200
    blocked = api.get(api.p())
    assert blocked.status_code == 429
    clock(api, {"advance_s": 1.5})  # the bucket refilled without waiting
    ok = api.get(api.p())
    assert ok.status_code == 200
    assert abs(int(ok.headers["X-RateLimit-Reset"]) - now_of(api)) < 3


def relative(key: str, lower: float | None, upper: float | None = None, *, condition: str = "attribute_condition",
             **extra: Any) -> dict[str, Any]:
    values = {"lowerOffset": lower, "upperOffset": upper, "lowerExcludeEquals": False,
              "upperExcludeEquals": False, "lowerRounding": False, "upperRounding": False,
              "lowerOffsetPeriod": "day", "upperOffsetPeriod": "day", **extra}
    return {"type": "group", "join": "and",
            "children": [{"type": condition, "key": key, "operator": "range-date-relative", "values": values}]}


def ids(api: Api, path: str, root: dict[str, Any], key: str) -> set[str]:
    entities, _ = api.scroll_all(path, {"root": root})
    if key == "_user_id":
        return {e["attributesData"]["_user_id"] for e in entities}
    return {e[key] for e in entities}


def test_range_date_relative_in_days(api: Api) -> None:
    clock(api, {"now": "2030-06-01T12:00:00Z"})
    api.push_contacts([{"_user_id": "old"}])
    api.push_events([order("e-old", "old")])
    clock(api, {"advance_s": 3 * 86400 + 3600})  # 2030-06-04T13:00
    api.push_contacts([{"_user_id": "new"}])
    api.push_events([order("e-new", "new")])
    clock(api, {"advance_s": 3600})  # 2030-06-04T14:00
    audience, events = "/audience/scroll", "/event/scroll"
    assert ids(api, audience, relative("_date_updated", -1), "_user_id") == {"new"}
    assert ids(api, audience, relative("_date_updated", -3), "_user_id") == {"new"}  # old is 3 d 2 h back
    assert ids(api, audience, relative("_date_updated", -4), "_user_id") == {"old", "new"}
    assert ids(api, audience, relative("_date_updated", None, -1), "_user_id") == {"old"}
    assert ids(api, audience, relative("_date_updated", -0.05), "_user_id") == {"new"}  # 1.2 h back
    assert ids(api, audience, relative("_date_updated", -0.04), "_user_id") == set()  # 0.96 h back
    assert ids(api, events, relative("created-at", -1, condition="event_condition"), "_event_id") == {"e-new"}
    assert ids(api, events, relative("created-at", -4, condition="event_condition"), "_event_id") == {
        "e-old", "e-new"}
    # rounding: the lower bound goes back to the start of its day (2030-06-01 00:00 for -3 days)
    assert ids(api, audience, relative("_date_updated", -3, lowerRounding=True), "_user_id") == {"old", "new"}
    # the upper bound of 0 days with rounding is the end of today
    assert ids(api, audience, relative("_date_updated", -1, 0, upperRounding=True), "_user_id") == {"new"}
    # contacts filtered on an event condition use the same clock
    assert ids(api, audience, relative("created-at", -1, condition="event_condition"), "_user_id") == {"new"}


def test_range_date_relative_refuses_what_the_docs_do_not_show(api: Api) -> None:
    for extra in ({"lowerOffsetPeriod": "fortnight"}, {"lowerOffset": "-1"}):
        root = relative("_date_updated", -1, **extra)
        r = api.post(api.p("/audience/scroll"), json={"root": root})
        assert r.status_code == 400, r.text
        assert "range-date-relative" in r.json()["message"]


def test_the_python_handle_moves_the_same_clock(emulator) -> None:
    api = Api(emulator.base_url)
    emulator.clock.advance(86400)
    assert abs(now_of(api) - (time.time() + 86400)) < 2
    emulator.reset()
    assert abs(now_of(api) - time.time()) < 2
