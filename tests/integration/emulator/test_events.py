"""Events: parameter validation, dedupe by _event_id, skipped unknown contacts, _user_data,
default _event_date and the +-1 hour automation window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .conftest import Api, order


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def test_event_parameters_validated(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1"}])
    r = api.push_events(
        [
            order("ok"),
            order("e1", _event_parameters={"order_id": "o", "amount": "ten"}),
            order("e2", _event_parameters={"order_id": "o", "amount": 1, "items": {"sku": 1}}),
            order(
                "e3", _event_parameters={"order_id": "o", "amount": 1, "items": [str(i) for i in range(11)]}
            ),
            order("e4", _event_type="nope"),
            order("e5", _event_parameters=["x"]),
            {
                "_user_id": "u1",
                "_event_id": "e6",
                "_event_type": "page_view",
                "_event_parameters": {"url": None},
            },
            order("e7", extra_field=1),
        ]
    )
    assert [a["position"] for a in r.json()["accepted"]] == [0]
    errors = {e["position"]: e["errors"] for e in r.json()["errors"]}
    assert errors[1] == {"_event_parameters.amount": ["expected a number"]}
    assert errors[2] == {"_event_parameters.items": ["expected an array of at most 10 values, got an object"]}
    assert errors[3] == {"_event_parameters.items": ["more than 10 values (11)"]}
    assert errors[4] == {"_event_type": ["unknown event type 'nope'"]}
    assert errors[5] == {"_event_parameters": ["expected an object"]}
    assert errors[6] == {"_event_parameters.url": ["required"]}
    assert errors[7] == {"extra_field": ["unknown event field"]}


def test_event_id_required(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1"}])
    event = order("x")
    del event["_event_id"]
    r = api.push_events([event, order("")])
    assert r.status_code == 422
    assert [e["errors"] for e in r.json()["errors"]] == [
        {"_event_id": ["required"]},
        {"_event_id": ["must not be empty"]},
    ]


def test_event_date_needs_a_timezone(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1"}])
    r = api.push_events(
        [
            order("a", _event_date="2024-01-01T10:00:00"),
            order("b", _event_date="yesterday"),
            order("c", _event_date="2024-01-01T10:00:00+02:00"),
        ]
    )
    assert [a["position"] for a in r.json()["accepted"]] == [2]
    assert {e["position"] for e in r.json()["errors"]} == {0, 1}


def test_dedupe_by_event_id_in_one_batch_and_across_batches(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1"}])
    r = api.push_events([order("e1"), order("e1"), order("e2")])
    assert r.status_code == 202 and r.json()["entitiesSuccess"] == 3  # duplicates are accepted and dropped
    assert api.state()["events"] == 2
    r = api.push_events([order("e1"), order("e2"), order("e3")])
    assert r.json()["entitiesSuccess"] == 3
    assert api.state()["events"] == 3
    assert len(api.automations()) == 3


def test_event_only_payload_for_unknown_contact_is_skipped_silently(api: Api) -> None:
    r = api.push_events([order("e1", user_id="ghost")])
    assert r.status_code == 202 and r.json()["accepted"][0]["position"] == 0
    assert api.state()["events"] == 0 and api.automations() == []
    # not remembered either: once the contact exists the same event id is stored
    api.push_contacts([{"_user_id": "ghost"}])
    api.push_events([order("e1", user_id="ghost")])
    assert api.state()["events"] == 1


def test_user_data_creates_or_updates_the_contact_in_the_same_call(api: Api) -> None:
    r = api.push_events([order("e1", user_id="new", _user_data={"_email": "new@example.com", "plan": "pro"})])
    assert r.status_code == 202
    contact = api.contact("new").json()["contact"]["contactData"]
    assert contact["_email"] == "new@example.com" and contact["plan"] == "pro"
    assert api.state()["events"] == 1
    api.push_events([order("e2", user_id="new", _user_data={"plan": "free"})])
    assert api.contact("new").json()["contact"]["contactData"]["plan"] == "free"
    bad = api.push_events([order("e3", user_id="other", _user_data={"plan": 3, "_user_id": "nope"})])
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["errors"] == {
        "_user_data._user_id": ["must equal the event's _user_id"],
        "_user_data.plan": ["expected a string"],
    }
    assert api.contact("other").status_code == 404


def test_event_date_defaults_to_reception_time(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1"}])
    before = datetime.now(UTC) - timedelta(seconds=1)
    api.push_events([order("e1")])
    after = datetime.now(UTC) + timedelta(seconds=1)
    aid = api.audience_by_user("u1").json()["entity"]["id"]
    ev = api.get(api.p(f"/audience/{aid}/events")).json()["entities"]["ecommerce_order_create"][0]
    stamp = datetime.fromisoformat(ev["_event_date"])
    assert before <= stamp <= after
    assert ev["_event_date"] == ev["receivedAt"]


def test_only_events_within_one_hour_reach_automations(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1"}])
    now = datetime.now(UTC)
    r = api.push_events(
        [
            order("inside-past", _event_date=iso(now - timedelta(minutes=59))),
            order("inside-future", _event_date=iso(now + timedelta(minutes=59))),
            order("outside-past", _event_date=iso(now - timedelta(minutes=61))),
            order("outside-future", _event_date=iso(now + timedelta(minutes=61))),
            order("backfill", _event_date="2020-01-01T00:00:00Z"),
            order("now"),
        ]
    )
    assert r.json()["entitiesSuccess"] == 6
    assert api.state()["events"] == 6  # every event is stored regardless of its date
    fired = api.automations()
    assert sorted(a["_event_id"] for a in fired) == ["inside-future", "inside-past", "now"]
    assert set(fired[0]) >= {"_event_id", "_event_type", "_user_id", "_event_date", "receivedAt"}


def test_dry_run_events_store_nothing(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1"}])
    r = api.push_events(
        [order("e1"), order("e2", _user_data={"plan": "pro"}, user_id="u9")], query="?_dryRun"
    )
    assert r.json()["dryRun"] is True and r.json()["entitiesSuccess"] == 2
    assert api.state()["events"] == 0 and api.automations() == []
    assert api.contact("u9").status_code == 404


def test_duplicate_is_not_fired_twice(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1"}])
    api.push_events([order("e1")])
    api.push_events([order("e1")])
    assert [a["_event_id"] for a in api.automations()] == ["e1"]


def test_datetime_and_bool_parameters(make_emulator) -> None:
    config = {
        "extends": "default",
        "projects": [
            {
                "uid": "demo",
                "eventTypes": [
                    {
                        "uid": "visit",
                        "parameters": [
                            {"parameter": "at", "dataType": "datetime"},
                            {"parameter": "first", "dataType": "bool"},
                            {"parameter": "day", "dataType": "date"},
                        ],
                    }
                ],
            }
        ],
    }
    emu = make_emulator(config)
    api = Api(emu.base_url)
    api.push_contacts([{"_user_id": "u1"}])
    r = api.push_events(
        [
            {
                "_user_id": "u1",
                "_event_id": "a",
                "_event_type": "visit",
                "_event_parameters": {"at": "2024-05-01T10:00:00Z", "first": "1", "day": "2024-05-01"},
            },
            {
                "_user_id": "u1",
                "_event_id": "b",
                "_event_type": "visit",
                "_event_parameters": {"at": "soon", "first": "maybe", "day": "01/05/2024"},
            },
        ]
    )
    assert [a["position"] for a in r.json()["accepted"]] == [0]
    assert set(r.json()["errors"][0]["errors"]) == {
        "_event_parameters.at",
        "_event_parameters.first",
        "_event_parameters.day",
    }
