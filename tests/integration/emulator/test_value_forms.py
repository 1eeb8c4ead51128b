"""Value forms sent by Instasent's own integrations (n8n node, Activepieces piece).

Both send attribute and event-parameter values as text: numbers as "120"/"49.90", booleans as
"1"/"0"/null, multi-value attributes as an array (Activepieces) or a single string (n8n's free-text
field). docs/emulator.md, "Value forms", gives each decision and its source.
"""

from __future__ import annotations

import pytest

from .conftest import Api, order


def attrs(api: Api, user_id: str) -> dict:
    r = api.audience_by_user(user_id)
    assert r.status_code == 200, r.text
    return dict(r.json()["entity"]["attributesData"])


@pytest.mark.parametrize(
    ("text", "stored"),
    [("120", 120), ("49.90", 49.9), ("-3", -3), ("+7", 7), ("0.5", 0.5), (".5", 0.5), ("1e3", 1000.0)],
)
def test_numeric_strings_accepted_and_stored_as_numbers(api: Api, text: str, stored: float) -> None:
    r = api.push_contacts([{"_user_id": "u1", "loyalty_points": text}])
    assert r.status_code == 202 and r.json()["entitiesSuccess"] == 1, r.text
    value = attrs(api, "u1")["loyalty_points"]
    assert value == stored and not isinstance(value, str)


@pytest.mark.parametrize("text", ["", " 12", "12 ", "1,5", "12 points", "NaN", "Infinity", "0x10", "1e400"])
def test_non_numeric_strings_rejected(api: Api, text: str) -> None:
    r = api.push_contacts([{"_user_id": "u1", "loyalty_points": text}])
    assert r.json()["entitiesFailures"] == 1
    assert r.json()["errors"][0]["errors"]["loyalty_points"][0] in ("expected a number", "expected a finite number")


@pytest.mark.parametrize(
    ("value", "stored"),
    [("1", True), ("0", False), ("true", True), ("false", False), ("TRUE", True), ("False", False)],
)
def test_boolean_strings(api: Api, value: str, stored: bool) -> None:
    r = api.push_contacts([{"_user_id": "u1", "_is_subscribed_sms": value}])
    assert r.json()["entitiesSuccess"] == 1, r.text
    assert attrs(api, "u1")["_is_subscribed_sms"] is stored


def test_boolean_null_clears_and_other_words_rejected(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1", "_is_subscribed_sms": "1"}])
    assert api.push_contacts([{"_user_id": "u1", "_is_subscribed_sms": None}]).json()["entitiesSuccess"] == 1
    assert "_is_subscribed_sms" not in attrs(api, "u1")
    for word in ("yes", "no", "2", "on"):
        r = api.push_contacts([{"_user_id": "u2", "_is_subscribed_sms": word}])
        assert r.json()["entitiesFailures"] == 1, word


def test_single_scalar_for_multivalue_is_a_one_value_array(api: Api) -> None:
    r = api.push_contacts([{"_user_id": "u1", "_client_tags": "vip"}])
    assert r.json()["entitiesSuccess"] == 1, r.text
    assert attrs(api, "u1")["_client_tags"] == ["vip"]
    # not split on commas: the string is one value
    api.push_contacts([{"_user_id": "u2", "_client_tags": "a,b"}])
    assert attrs(api, "u2")["_client_tags"] == ["a,b"]
    # arrays as before (Activepieces sends them)
    api.push_contacts([{"_user_id": "u3", "_client_tags": ["a", "b"]}])
    assert attrs(api, "u3")["_client_tags"] == ["a", "b"]


def test_event_parameters_as_strings(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1"}])
    r = api.push_events(
        [
            order("e1", _event_parameters={"order_id": "o1", "amount": "49.90", "currency": "EUR", "items": "sku-1"}),
            order("e2", _event_parameters={"order_id": "o2", "amount": "120", "items": ["a", "b"]}),
            order("e3", _event_parameters={"order_id": "o3", "amount": "49,90"}),
        ]
    )
    assert [a["position"] for a in r.json()["accepted"]] == [0, 1]
    assert r.json()["errors"][0]["errors"] == {"_event_parameters.amount": ["expected a number"]}
    events = api.post(api.p("/event/search"), json={"sortField": "_event_date", "sortAsc": True}).json()
    by_id = {e["_event_id"]: e for e in events["entities"]}
    params = {k: by_id[k]["_event_parameters"] for k in ("e1", "e2")}
    assert params["e1"]["amount"] == 49.9 and params["e1"]["items"] == ["sku-1"]
    assert params["e2"]["amount"] == 120 and params["e2"]["items"] == ["a", "b"]


def test_string_fields_still_take_only_strings(api: Api) -> None:
    # coercion goes one way: text for numbers and booleans; a number is not a string
    r = api.push_contacts([{"_user_id": "u1", "plan": 7}])
    assert r.json()["errors"][0]["errors"] == {"plan": ["expected a string"]}
