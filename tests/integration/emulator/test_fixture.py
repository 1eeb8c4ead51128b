"""Fixture loading: defaults, extends, validation errors, seed data, admin reset."""

from __future__ import annotations

import pytest
import requests

from airflow_provider_instasent.emulator import FixtureError, load_fixture

from .conftest import Api


def test_default_fixture_contents() -> None:
    fx = load_fixture()
    demo = fx.projects["demo"]
    assert [d.uid for d in demo.datasources] == ["dsapi", "crm"]
    assert demo.merging_attributes == ("_user_id", "_email", "_phone_mobile")
    assert set(fx.tokens) == {"demo-admin-token", "demo-readonly-token", "demo-dsapi-token"}
    assert set(fx.tokens["demo-readonly-token"].scopes) == {
        "PROJECT_AUDIENCE_READ",
        "PROJECT_DATASOURCE_READ",
        "PROJECT_CAMPAIGN_READ",
        "PROJECT_AUTOMATION_READ",
    }
    assert fx.tokens["demo-dsapi-token"].kind == "datasource"
    assert {a: demo.attributes[a].data_type for a in ("plan", "loyalty_points", "birthday")} == {
        "plan": "string",
        "loyalty_points": "number",
        "birthday": "date",
    }
    order = demo.event_types["ecommerce_order_create"].param_map
    assert order["order_id"].required and order["order_id"].max_length == 64
    assert order["amount"].required and order["currency"].max_length == 3 and order["items"].multi_value == 10
    assert demo.event_types["page_view"].param_map["url"].max_length == 2048
    assert {s.type for s in demo.segments.values()} == {"static", "dynamic"}
    assert demo.campaigns and demo.automations and demo.sms_senders


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"projects": []}, "at least one project"),
        ({"projects": [{"uid": "p", "datasources": []}]}, "at least one datasource"),
        ({"projects": [{"uid": "p", "datasources": [{"uid": "d"}], "wat": 1}]}, "unknown keys"),
        (
            {
                "projects": [
                    {
                        "uid": "p",
                        "datasources": [{"uid": "d"}],
                        "attributes": [{"uid": "a", "dataType": "blob"}],
                    }
                ]
            },
            "dataType",
        ),
        (
            {
                "projects": [{"uid": "p", "datasources": [{"uid": "d"}]}],
                "tokens": [{"token": "t", "scopes": ["NOPE"]}],
            },
            "unknown scope",
        ),
        (
            {
                "projects": [{"uid": "p", "datasources": [{"uid": "d"}]}],
                "tokens": [{"token": "t", "type": "datasource", "project": "p", "datasource": "x"}],
            },
            "unknown datasource",
        ),
        ({"extends": "other"}, "extends"),
    ],
)
def test_fixture_errors_name_the_problem(config: dict, message: str) -> None:
    with pytest.raises(FixtureError, match=message):
        load_fixture(config)


def test_minimal_fixture_and_seed_data(make_emulator) -> None:
    config = {
        "projects": [
            {
                "uid": "shop",
                "datasources": [{"uid": "api"}],
                "eventTypes": [{"uid": "visit", "parameters": []}],
                "contacts": {"api": [{"_user_id": "seed-1"}, {"_user_id": "seed-2"}]},
                "events": {
                    "api": [
                        {
                            "_user_id": "seed-1",
                            "_event_id": "v1",
                            "_event_type": "visit",
                            "_event_date": "2024-01-01T00:00:00Z",
                        }
                    ]
                },
            }
        ],
        "tokens": [{"token": "t", "scopes": "all"}],
    }
    emu = make_emulator(config)
    api = Api(emu.base_url, "t", "shop")
    assert api.state() == {
        "events": 1,
        "audience_contacts": 2,
        "contacts": {"api": 2},
        "projects": {"shop": {"events": 1, "audience_contacts": 2, "contacts": {"api": 2}}},
    }
    api.push_contacts([{"_user_id": "x"}], ds="dsapi")  # alias of the only API datasource
    assert api.state()["contacts"] == {"api": 3}
    r = requests.post(emu.base_url + "/_emulator/reset", timeout=10)
    assert r.status_code == 200 and r.json()["state"]["contacts"] == {"api": 2}


def test_reset_drops_runtime_datasources_and_tokens(api: Api) -> None:
    token = api.post(api.p("/datasource"), json={"name": "Tmp", "audienceTags": []}).json()["entity"][
        "token"
    ]["token"]
    api.push_contacts([{"_user_id": "u1"}])
    requests.post(api.base_url + "/_emulator/reset", timeout=10)
    assert api.state()["contacts"] == {"dsapi": 0, "crm": 0}
    assert api.as_token(token).get(api.ds("tmp", "/stream")).status_code == 401
    assert api.get(api.ds("tmp", "/stream")).status_code == 404


def test_admin_endpoint_errors(api: Api) -> None:
    assert requests.get(api.base_url + "/_emulator/nope", timeout=10).status_code == 404
    assert requests.get(api.base_url + "/_emulator/reset", timeout=10).status_code == 405
    assert requests.get(api.base_url + "/_emulator/state?project=nope", timeout=10).status_code == 404
    assert requests.get(api.base_url + "/_emulator/health", timeout=10).json()["status"] == "ok"
