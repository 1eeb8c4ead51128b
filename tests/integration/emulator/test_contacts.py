"""Contacts: upsert by _user_id, kept/cleared attributes, value validation, delete, dry run."""

from __future__ import annotations

import pytest

from .conftest import Api


def data(api: Api, user_id: str, ds: str = "dsapi") -> dict:
    r = api.contact(user_id, ds)
    assert r.status_code == 200, r.text
    return dict(r.json()["contact"]["contactData"])


def test_upsert_by_user_id_per_datasource(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1", "plan": "free"}])
    api.push_contacts([{"_user_id": "u1", "plan": "pro"}])
    api.push_contacts([{"_user_id": "u1", "plan": "basic"}], ds="crm")
    assert data(api, "u1")["plan"] == "pro"
    assert data(api, "u1", "crm")["plan"] == "basic"
    assert api.state()["contacts"] == {"dsapi": 1, "crm": 1}


def test_omitted_attribute_kept_and_explicit_null_cleared(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1", "plan": "pro", "loyalty_points": 10, "_first_name": "Ada"}])
    api.push_contacts([{"_user_id": "u1", "loyalty_points": None}])
    d = data(api, "u1")
    assert d["plan"] == "pro" and d["_first_name"] == "Ada"
    assert "loyalty_points" not in d


def test_same_user_twice_in_one_batch_applies_in_order(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1", "plan": "free"}, {"_user_id": "u1", "loyalty_points": 3}])
    d = data(api, "u1")
    assert d["plan"] == "free" and d["loyalty_points"] == 3


def test_read_only_attribute_is_an_item_error(api: Api) -> None:
    r = api.push_contacts([{"_user_id": "u1", "_date_updated": "2024-01-01T00:00:00Z"}])
    assert r.status_code == 422
    assert r.json()["errors"][0]["errors"] == {"_date_updated": ["read-only attribute"]}
    assert api.state()["contacts"]["dsapi"] == 0


def test_unknown_attribute_rejected(api: Api) -> None:
    r = api.push_contacts([{"_user_id": "u1", "signup_source": "landing"}])
    assert r.json()["errors"][0]["errors"] == {"signup_source": ["unknown attribute"]}


def test_unknown_attribute_accepted_when_the_project_allows(make_emulator) -> None:
    emu = make_emulator(
        {"extends": "default", "projects": [{"uid": "demo", "acceptUnknownAttributes": True}]}
    )
    api = Api(emu.base_url)
    assert api.push_contacts([{"_user_id": "u1", "signup_source": "landing"}]).status_code == 202
    assert data(api, "u1")["signup_source"] == "landing"


def test_multivalue_attribute_takes_an_array_of_at_most_n(api: Api) -> None:
    ok = api.push_contacts([{"_user_id": "u1", "_client_tags": ["a", "b"]}])
    assert ok.status_code == 202 and data(api, "u1")["_client_tags"] == ["a", "b"]
    r = api.push_contacts(
        [
            {"_user_id": "u2", "_client_tags": {"a": 1}},
            {"_user_id": "u3", "_client_tags": [str(i) for i in range(51)]},
            {"_user_id": "u4", "_client_tags": ["a", 3]},
            {"_user_id": "u5", "plan": ["pro"]},
        ]
    )
    errors = {e["position"]: e["errors"] for e in r.json()["errors"]}
    # a bare scalar is now a one-value array (docs/emulator.md, "Value forms"); an object is not
    assert errors[0] == {"_client_tags": ["expected an array of at most 50 values, got an object"]}
    assert errors[1] == {"_client_tags": ["more than 50 values (51)"]}
    assert errors[2] == {"_client_tags": ["value 1: expected a string"]}
    assert errors[3] == {"plan": ["expected a single value, got an array"]}


@pytest.mark.parametrize(
    ("attribute", "good", "bad", "reason"),
    [
        ("loyalty_points", 12.5, "12 points", "expected a number"),
        ("birthday", "1990-02-28", "1990-02-30", "expected a date YYYY-MM-DD"),
        ("_email", "ada@example.com", "ada@", "invalid email address"),
        ("_phone_mobile", "+34 600-000-000", "call me", "invalid phone number"),
        (
            "_is_subscribed_sms",
            "1",
            "yes",
            'expected a boolean: "1", "0", "true", "false", true, false, 1, 0 or null',
        ),
        ("plan", "pro", 7, "expected a string"),
    ],
)
def test_values_validated_against_attribute_specs(api: Api, attribute: str, good, bad, reason: str) -> None:
    r = api.push_contacts([{"_user_id": "good", attribute: good}, {"_user_id": "bad", attribute: bad}])
    assert r.status_code == 202
    assert [a["position"] for a in r.json()["accepted"]] == [0]
    assert r.json()["errors"][0]["errors"] == {attribute: [reason]}


def test_bool_values_are_normalised(api: Api) -> None:
    api.push_contacts(
        [
            {
                "_user_id": "u1",
                "_is_subscribed_sms": "1",
                "_accepts_marketing_sms": 0,
                "_is_subscribed_email": True,
            }
        ]
    )
    d = data(api, "u1")
    assert d["_is_subscribed_sms"] is True and d["_accepts_marketing_sms"] is False
    assert d["_is_subscribed_email"] is True


def test_user_id_rules(api: Api) -> None:
    r = api.push_contacts(
        [{"_user_id": 42}, {"_user_id": ""}, {"_user_id": "x" * 256}, {}, {"_user_id": True}, "str"]
    )
    assert [a["position"] for a in r.json()["accepted"]] == [0]
    errors = {e["position"]: e["errors"] for e in r.json()["errors"]}
    assert errors == {
        1: {"_user_id": ["must not be empty"]},
        2: {"_user_id": ["longer than 255 characters"]},
        3: {"_user_id": ["required"]},
        4: {"_user_id": ["expected a non-empty string"]},
        5: {"item": ["expected an object"]},
    }
    assert data(api, "42")["_user_id"] == "42"


def test_delete_removes_datasource_contact_and_its_share_of_the_audience(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1", "plan": "pro", "_first_name": "Ada"}])
    api.push_contacts([{"_user_id": "u1", "plan": "free", "_last_name": "Lovelace"}], ds="crm")
    merged = api.audience_by_user("u1").json()["entity"]["attributesData"]
    assert merged["_datasources"] == ["dsapi", "crm"] and merged["plan"] == "pro"
    assert api.delete(api.ds("dsapi", "/stream/contacts/u1")).status_code == 202
    after = api.audience_by_user("u1").json()["entity"]["attributesData"]
    assert after["_datasources"] == ["crm"] and after["plan"] == "free" and "_first_name" not in after
    assert api.state() == {**api.state(), "contacts": {"dsapi": 0, "crm": 1}, "audience_contacts": 1}
    api.delete(api.ds("crm", "/stream/contacts/u1"))
    assert api.audience_by_user("u1").status_code == 404
    assert api.state()["audience_contacts"] == 0


def test_dry_run_validates_and_stores_nothing(api: Api) -> None:
    r = api.push_contacts([{"_user_id": "u1"}, {"_user_id": "u2", "plan": 1}], query="?_dryRun")
    body = r.json()
    assert r.status_code == 202 and body["dryRun"] is True
    assert body["entitiesSuccess"] == 1 and body["entitiesFailures"] == 1
    assert api.state()["contacts"]["dsapi"] == 0 and api.contact("u1").status_code == 404
    assert api.get(api.ds("dsapi", "/stats")).json()["contacts"] == {"total": 0, "errored": 0}
