"""Token scopes, plan gating, privacy levels, datasource tokens and project isolation."""

from __future__ import annotations

import pytest

from .conftest import DS_TOKEN, Api, order

PRIVACY_CONFIG = {
    "extends": "default",
    "tokens": [
        {"token": "t-default", "projects": ["demo"], "scopes": ["PROJECT_AUDIENCE_READ"]},
        {
            "token": "t-basic",
            "projects": ["demo"],
            "scopes": ["PROJECT_AUDIENCE_READ", "PROJECT_AUDIENCE_DATA_BASIC"],
        },
        {
            "token": "t-full",
            "projects": ["demo"],
            "scopes": ["PROJECT_AUDIENCE_READ", "PROJECT_AUDIENCE_DATA_FULL"],
        },
    ],
}
CONTACT = {
    "_user_id": "u1",
    "_first_name": "Ada",
    "_last_name": "Lovelace",
    "_email": "ada@example.com",
    "_phone_mobile": "+34600000000",
    "_country_code": "ES",
    "_is_subscribed_sms": "1",
    "plan": "pro",
    "loyalty_points": 12,
    "birthday": "1815-12-10",
}


@pytest.fixture
def privacy_api(make_emulator) -> Api:
    emu = make_emulator(PRIVACY_CONFIG)
    api = Api(emu.base_url)
    assert api.push_contacts([CONTACT]).status_code == 202
    return api


def attrs_for(api: Api, token: str) -> dict:
    r = api.as_token(token).audience_by_user("u1")
    assert r.status_code == 200, r.text
    return dict(r.json()["entity"]["attributesData"])


def test_default_level_returns_full_name_and_user_id_only(privacy_api: Api) -> None:
    attrs = attrs_for(privacy_api, "t-default")
    assert set(attrs) == {"_user_id", "_full_name", "_datasources", "_ds_contact_ids"}
    assert attrs["_full_name"] == "Ada Lovelace"


def test_basic_level_adds_phone_email_country_name_booleans(privacy_api: Api) -> None:
    attrs = attrs_for(privacy_api, "t-basic")
    assert set(attrs) == {
        "_user_id",
        "_full_name",
        "_first_name",
        "_last_name",
        "_email",
        "_phone_mobile",
        "_country_code",
        "_is_subscribed_sms",
        "_datasources",
        "_ds_contact_ids",
    }


def test_full_level_returns_everything(privacy_api: Api) -> None:
    attrs = attrs_for(privacy_api, "t-full")
    for key in ("plan", "loyalty_points", "birthday", "_email", "_date_updated"):
        assert key in attrs
    assert attrs == attrs_for(privacy_api, "demo-admin-token")


def test_privacy_applies_to_lookups_and_scrolls(privacy_api: Api) -> None:
    basic = privacy_api.as_token("t-basic")
    found = basic.get(basic.p("/audience/search/email/ada@example.com")).json()["entities"][0][
        "attributesData"
    ]
    assert "plan" not in found and found["_email"] == "ada@example.com"
    scrolled, _ = privacy_api.scroll_all()
    assert scrolled[0]["attributesData"]["plan"] == "pro"


def test_plan_gating_scope_in_token_but_not_in_plan(make_emulator) -> None:
    config = {
        "extends": "default",
        "organization": {"plan": {"key": "S", "allowedScopes": ["PROJECT_AUDIENCE_DATA_BASIC"]}},
        "tokens": [{"token": "t-all", "projects": ["demo"], "scopes": "all"}],
    }
    emu = make_emulator(config)
    api = Api(emu.base_url, "t-all")
    api.push_contacts([CONTACT])
    r = api.post(api.p("/audience/scroll"), json={})
    assert r.status_code == 403
    body = r.json()
    assert body["missingScope"] == "PROJECT_AUDIENCE_LIST" and body["planLevel"] == "S"
    assert "plan" in body["message"]
    r = api.post(api.p("/audience/aggregations"), json={"aggregations": {"n": {"type": "count"}}})
    assert r.status_code == 403 and "manually granted" in r.json()["message"]
    # DATA_FULL is not allowed by the plan, so the privacy level falls back to basic
    attrs = api.audience_by_user("u1").json()["entity"]["attributesData"]
    assert "_email" in attrs and "plan" not in attrs
    assert "PROJECT_AUDIENCE_LIST" not in api.get("/").json()["metadata"]["scopes"]


def test_datasource_token_writes_only_to_its_datasource(api: Api) -> None:
    ds = api.as_token(DS_TOKEN)
    assert ds.push_contacts([{"_user_id": "u1"}]).status_code == 202
    assert ds.push_events([order("e1")]).status_code == 202
    assert ds.get(ds.ds("dsapi", "/stream")).json()["token"]["type"] == "datasource"
    assert ds.contact("u1").status_code == 200
    assert ds.get(ds.ds("dsapi", "/stats")).status_code == 200
    assert ds.delete(ds.ds("dsapi", "/stream/contacts/u1")).status_code == 202
    for r in (
        ds.push_contacts([{"_user_id": "u2"}], ds="crm"),
        ds.get(ds.p()),
        ds.get("/"),
        ds.get(ds.p("/datasource")),
        ds.get(ds.p("/audience/user/u1")),
        ds.post(ds.p("/audience/scroll"), json={}),
    ):
        assert r.status_code == 403, r.url
        assert "Datasource tokens" in r.json()["message"]
    assert api.state()["contacts"] == {"dsapi": 0, "crm": 0}


def test_product_token_uses_ingest_on_any_datasource(api: Api) -> None:
    assert api.push_contacts([{"_user_id": "u1"}], ds="crm").status_code == 202
    assert api.push_contacts([{"_user_id": "u1"}], ds="dsapi").status_code == 202


TWO_PROJECTS = {
    "extends": "default",
    "projects": [
        {
            "uid": "brand2",
            "id": 2002,
            "name": "Brand two",
            "datasources": [{"uid": "dsapi", "id": 3101, "priority": 1}],
            "attributes": [{"uid": "plan", "dataType": "string"}],
            "eventTypes": [{"uid": "page_view", "parameters": [{"parameter": "url", "required": True}]}],
        }
    ],
    "tokens": [
        {"token": "brand2-admin", "projects": ["brand2"], "scopes": "all"},
        {"token": "org-admin", "projects": "all", "scopes": "all"},
        {"token": "brand2-ds", "type": "datasource", "project": "brand2", "datasource": "dsapi"},
    ],
}


def test_projects_are_isolated(make_emulator) -> None:
    emu = make_emulator(TWO_PROJECTS)
    demo = Api(emu.base_url, "demo-admin-token", "demo")
    brand2 = Api(emu.base_url, "brand2-admin", "brand2")
    demo.push_contacts([{"_user_id": "u1", "plan": "pro"}])
    brand2.push_contacts([{"_user_id": "u1", "plan": "free"}])
    assert demo.audience_by_user("u1").json()["entity"]["attributesData"]["plan"] == "pro"
    assert brand2.audience_by_user("u1").json()["entity"]["attributesData"]["plan"] == "free"
    assert (
        demo.audience_by_user("u1").json()["entity"]["id"]
        != brand2.audience_by_user("u1").json()["entity"]["id"]
    )
    # a token never sees a project it is not granted: 404, not 403
    assert demo.get("/project/brand2").status_code == 404
    assert brand2.get("/project/demo").status_code == 404
    assert brand2.push_contacts([{"_user_id": "x"}]).status_code == 202
    assert Api(emu.base_url, "brand2-admin", "demo").push_contacts([{"_user_id": "x"}]).status_code == 404
    assert Api(emu.base_url, "brand2-ds", "demo").push_contacts([{"_user_id": "x"}]).status_code == 404
    # specs are per project: brand2 has no ecommerce_order_create event type
    r = brand2.push_events([order("e1")])
    assert r.status_code == 422
    org = Api(emu.base_url, "org-admin")
    assert {p["uid"] for p in org.get("/").json()["entity"]["projects"]} == {"demo", "brand2"}
    assert emu.state("demo") == {"events": 0, "audience_contacts": 1, "contacts": {"dsapi": 1, "crm": 0}}
    assert emu.state("brand2")["contacts"] == {"dsapi": 2}
    assert brand2.state()["contacts"] == {"dsapi": 3, "crm": 0}
