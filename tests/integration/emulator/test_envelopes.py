"""Paths, methods, envelopes and status codes (api-facts.md sections 1-4)."""

from __future__ import annotations

import requests

from .conftest import ADMIN, Api, order

RL_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def test_token_info_envelope(api: Api) -> None:
    r = api.get("/")
    assert r.status_code == 200
    body = r.json()
    entity = body["entity"]
    assert {"id", "title", "token", "testMode", "projects"} <= set(entity)
    assert entity["token"] != ADMIN and "*" in entity["token"]  # masked
    assert entity["projects"] == [{"uid": "demo", "id": 2001, "name": "Demo project"}]
    assert "organization" in body["metadata"]
    assert "account" in body["metadata"]["organization"]  # the admin token has ACCOUNT_READ
    assert "PROJECT_AUDIENCE_LIST" in body["metadata"]["scopes"]


def test_account_needs_account_read(api: Api) -> None:
    body = api.as_token("demo-readonly-token").get("/").json()
    assert "account" not in body["metadata"]["organization"]


def test_project_and_specs_envelopes(api: Api) -> None:
    project = api.get(api.p()).json()
    assert project["entity"]["uid"] == "demo"
    assert set(project["metadata"]) >= {"organization", "scopes", "uniqueAttributes"}
    assert set(project["metadata"]["uniqueAttributes"]) == {"_user_id", "_email", "_phone_mobile"}

    attrs = api.get(api.p("/specs/attributes")).json()
    by_uid = {a["uid"]: a for a in attrs["entities"]}
    # project specs carry both spellings: `readonly`, and `readOnly`/`requiredInWebhook` (read by n8n)
    assert by_uid["_date_updated"]["readonly"] is True and by_uid["_date_updated"]["readOnly"] is True
    assert by_uid["_user_id"]["requiredInWebhook"] is True and by_uid["plan"]["requiredInWebhook"] is False
    assert by_uid["plan"]["dataType"] == "string" and by_uid["plan"]["custom"] is True
    assert by_uid["loyalty_points"]["dataType"] == "number"
    assert by_uid["birthday"]["dataType"] == "date"
    assert by_uid["_email"]["unique"] is True
    assert by_uid["_client_tags"]["multivalue"] == 50
    assert "uniqueAttributes" in attrs["metadata"]

    events = api.get(api.p("/specs/events")).json()
    assert {e["uid"] for e in events["entities"]} == {"ecommerce_order_create", "page_view"}
    params = api.get(api.p("/specs/events/ecommerce_order_create")).json()
    assert params["metadata"]["event"]["uid"] == "ecommerce_order_create"
    by_param = {p["parameter"]: p for p in params["entities"]}
    assert by_param["order_id"] == {
        **by_param["order_id"],
        "required": True,
        "maxLength": 64,
        "dataType": "string",
    }
    assert by_param["items"]["multiValue"] == 10
    assert api.get(api.p("/specs/events/nope")).status_code == 404


def test_stream_specs_use_ingest_shapes(api: Api) -> None:
    attrs = api.get(api.ds("dsapi", "/stream/specs/attributes")).json()
    assert list(attrs) == ["specs"]
    spec = {a["uid"]: a for a in attrs["specs"]}["_date_updated"]
    assert spec["readOnly"] is True and "readonly" not in spec
    assert "multivalue" in spec
    events = api.get(api.ds("dsapi", "/stream/specs/events")).json()
    assert {e["uid"] for e in events["specs"]} == {"ecommerce_order_create", "page_view"}
    params = api.get(api.ds("dsapi", "/stream/specs/event-parameters/page_view")).json()
    assert params["specs"][0] == {
        **params["specs"][0],
        "parameter": "url",
        "required": True,
        "maxLength": 2048,
        "multiValue": 1,
    }
    assert set(params["specs"][0]) >= {
        "parameter",
        "title",
        "dataType",
        "maxLength",
        "required",
        "multiValue",
    }
    assert api.get(api.ds("dsapi", "/stream/specs/event-parameters/nope")).status_code == 404


def test_stream_probe_and_stats(api: Api) -> None:
    body = api.get(api.ds("dsapi", "/stream")).json()
    assert {"organization", "stream", "datasource", "project", "token"} <= set(body)
    assert body["token"]["type"] == "product" and "PROJECT_DATASOURCE_WRITE" in body["token"]["scopes"]
    api.push_contacts([{"_user_id": "u1"}, {"_user_id": "u2"}, {"_user_id": ""}])
    stats = api.get(api.ds("dsapi", "/stats")).json()
    assert stats["contacts"] == {"total": 2, "errored": 1}
    assert stats["datasource"]["uid"] == "dsapi"


def test_datasource_index_get_and_create(api: Api) -> None:
    index = api.get(api.p("/datasource")).json()
    assert [d["uid"] for d in index["entities"]] == ["dsapi", "crm"]
    assert index["metadata"] == {"count": 2, "start": 0, "limit": 2}
    page = api.get(api.p("/datasource?_start=1&_limit=1")).json()
    assert [d["uid"] for d in page["entities"]] == ["crm"] and page["metadata"] == {
        "count": 2,
        "start": 1,
        "limit": 1,
    }
    assert api.get(api.p("/datasource/crm")).json()["entity"]["priority"] == 2
    assert api.get(api.p("/datasource/nope")).status_code == 404

    r = api.post(api.p("/datasource"), json={"name": "Shop events", "audienceTags": ["shop"]})
    assert r.status_code == 201
    ds = r.json()["entity"]
    assert ds["uid"] == "shop_events" and ds["audienceTags"] == ["shop"] and ds["token"]["token"]
    # the minted datasource token works on its own datasource only
    own = api.as_token(ds["token"]["token"])
    assert own.push_contacts([{"_user_id": "x"}], ds="shop_events").status_code == 202
    assert own.push_contacts([{"_user_id": "x"}], ds="dsapi").status_code == 403
    bad = api.post(api.p("/datasource"), json={"name": "x"})
    assert bad.status_code == 400 and "audienceTags" in bad.json()["errors"]


def test_push_response_shape_and_zero_based_positions(api: Api) -> None:
    r = api.push_contacts([{"_user_id": "u1"}, {"_user_id": "u2", "plan": 5}, {"_user_id": "u3"}])
    assert r.status_code == 202
    body = r.json()
    for key in (
        "success",
        "status",
        "streamId",
        "projectId",
        "projectUid",
        "datasourceId",
        "datasourceUid",
        "dryRun",
        "apiSpeedTier",
        "entitiesLimit",
        "entitiesSuccess",
        "entitiesFailures",
        "accepted",
        "errors",
        "stats",
    ):
        assert key in body, key
    assert body["success"] is True and body["status"] == 202 and body["dryRun"] is False
    assert body["entitiesLimit"] == 100 and body["apiSpeedTier"] == 1
    assert body["projectUid"] == "demo" and body["datasourceUid"] == "dsapi"
    assert [a["position"] for a in body["accepted"]] == [0, 2]
    assert body["accepted"][0]["item"] == {"_user_id": "u1"}
    assert body["entitiesSuccess"] == 2 and body["entitiesFailures"] == 1
    err = body["errors"][0]
    assert err["position"] == 1 and err["item"] == {"_user_id": "u2", "plan": 5}
    assert err["error"] == "plan: expected a string" and err["errors"] == {"plan": ["expected a string"]}


def test_every_error_of_an_item_is_reported(api: Api) -> None:
    r = api.push_events(
        [
            {
                "_user_id": "u1",
                "_event_type": "ecommerce_order_create",
                "_event_date": "2024-01-01T10:00:00",
                "_event_parameters": {"order_id": "x" * 65, "currency": "EURO", "coupon": "A"},
            }
        ]
    )
    assert r.status_code == 422
    errors = r.json()["errors"][0]["errors"]
    assert errors == {
        "_event_id": ["required"],
        "_event_date": ["expected an ISO 8601 datetime with a timezone (Z or +HH:MM)"],
        "_event_parameters.order_id": ["longer than 64 characters"],
        "_event_parameters.currency": ["longer than 3 characters"],
        "_event_parameters.coupon": ["unknown parameter"],
        "_event_parameters.amount": ["required"],
    }
    assert r.json()["errors"][0]["error"].count(";") == 5


def test_422_when_every_item_fails_same_shape(api: Api) -> None:
    r = api.push_contacts([{"plan": "pro"}, {"_user_id": "u2", "nope": 1}])
    assert r.status_code == 422
    body = r.json()
    assert body["success"] is False and body["status"] == 422
    assert body["accepted"] == [] and [e["position"] for e in body["errors"]] == [0, 1]
    assert body["errors"][0]["errors"] == {"_user_id": ["required"]}


def test_empty_batch_is_202(api: Api) -> None:
    r = api.push_events([])
    assert r.status_code == 202 and r.json()["entitiesSuccess"] == 0 and r.json()["success"] is True


def test_400_non_array_and_over_100_items(api: Api) -> None:
    r = api.push_contacts({"_user_id": "u1"})
    assert r.status_code == 400 and r.json() == {"message": "Body should be an array"}
    r = api.push_events([order(f"e{i}") for i in range(101)])
    assert r.status_code == 400 and r.json()["message"] == "Batch exceeds 100 items"
    assert api.push_events([order(f"e{i}") for i in range(100)]).status_code == 202
    r = api.post(
        api.ds("dsapi", "/stream/contacts"), data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "message" in r.json()


def test_401_missing_or_bad_token(api: Api) -> None:
    for client in (api.as_token(None), api.as_token("nope")):
        r = client.get(api.p())
        assert r.status_code == 401 and "message" in r.json()
    r = requests.get(api.base_url + "/v1/", headers={"Authorization": "Basic abc"}, timeout=10)
    assert r.status_code == 401


def test_403_missing_scope(api: Api) -> None:
    ro = api.as_token("demo-readonly-token")
    r = ro.push_contacts([{"_user_id": "u1"}])
    assert r.status_code == 403
    assert (
        r.json()["missingScope"] == "PROJECT_DATASOURCE_WRITE"
        and "PROJECT_DATASOURCE_WRITE" in r.json()["message"]
    )
    assert ro.post(ro.p("/audience/scroll"), json={}).json()["missingScope"] == "PROJECT_AUDIENCE_LIST"
    assert ro.get(ro.p("/campaign")).status_code == 200
    assert ro.get(ro.p("/channel/sms/sender")).json()["missingScope"] == "PROJECT_DIRECT_READ"


def test_404_unknown_project_datasource_contact_route(api: Api) -> None:
    assert api.get("/project/nope").status_code == 404
    assert api.push_contacts([{"_user_id": "u1"}], ds="nope").status_code == 404
    r = api.contact("ghost")
    assert r.status_code == 404 and "ghost" in r.json()["message"]
    assert api.delete(api.ds("dsapi", "/stream/contacts/ghost")).status_code == 404
    assert api.get(api.p("/audience/000000000000000000000999")).status_code == 404
    assert api.get("/nothing/here").status_code == 404
    assert api.request("PUT", api.p()).status_code == 405
    assert requests.get(api.base_url + "/elsewhere", timeout=10).status_code == 404


def test_stream_contact_and_delete_shapes(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1", "_email": "u1@example.com"}])
    contact = api.contact("u1").json()["contact"]
    assert {"id", "contactId", "audienceId", "contactData", "createdAt", "updatedAt", "deleted"} <= set(
        contact
    )
    assert contact["contactData"]["_email"] == "u1@example.com" and contact["deleted"] is False
    r = api.delete(api.ds("dsapi", "/stream/contacts/u1"))
    assert r.status_code == 202
    body = r.json()
    assert body["accepted"] == [{"position": 0, "item": "u1"}] and body["entitiesSuccess"] == 1
    assert api.contact("u1").status_code == 404


def test_rate_limit_headers_on_every_response(api: Api) -> None:
    for r in (
        api.get("/"),
        api.get("/project/nope"),
        api.as_token("bad").get("/"),
        api.push_contacts({"x": 1}),
        api.push_contacts([{"_user_id": "a"}]),
    ):
        for h in RL_HEADERS:
            assert h in r.headers, (h, r.status_code)
    assert int(api.get("/").headers["X-RateLimit-Limit"]) >= 100_000


def test_query_flags_bare_and_valued(api: Api) -> None:
    for query in ("?_dryRun", "?_dryRun=1", "?_dryRun=true", "?_sync&_dryRun"):
        body = api.push_contacts([{"_user_id": "u1"}], query=query).json()
        assert body["dryRun"] is True, query
    assert api.push_contacts([{"_user_id": "u1"}], query="?_dryRun=false").json()["dryRun"] is False
    assert api.push_contacts([{"_user_id": "u2"}], query="?_sync").json()["dryRun"] is False
    assert api.state()["contacts"]["dsapi"] == 2


def test_dsapi_alias_resolves_to_highest_priority_api_datasource(make_emulator) -> None:
    config = {
        "extends": "default",
        "projects": [
            {
                "uid": "other",
                "id": 9,
                "datasources": [
                    {"uid": "web", "id": 91, "type": "api", "priority": 2},
                    {"uid": "main", "id": 92, "type": "api", "priority": 1},
                    {"uid": "csv", "id": 93, "type": "file", "priority": 0},
                ],
            }
        ],
        "tokens": [{"token": "other-admin", "projects": ["other"], "scopes": "all"}],
    }
    emu = make_emulator(config)
    api = Api(emu.base_url, "other-admin", project="other")
    r = api.push_contacts([{"_user_id": "u1"}], ds="dsapi")
    assert r.status_code == 202 and r.json()["datasourceUid"] == "main"
