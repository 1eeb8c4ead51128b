"""Replay of every HTTP call Instasent's own integrations make, the way they make it.

Sources (read with the search tool; none of their code is copied here):

* n8n community node ``dev-instasent/n8n-nodes-instasent`` v0.2.0:
  ``nodes/Instasent/Ingest/{InstasentIngest.node.ts,GenericFunctions.ts,LoadOptions.ts}`` (datasource
  token, base ``/v1/project/{p}/datasource/{ds}``) and
  ``nodes/Instasent/Product/{InstasentProduct.node.ts,GenericFunctions.ts,LoadOptions.ts,*Description.ts}``
  (product token, base ``/v1``);
* Activepieces piece ``activepieces/activepieces``, ``packages/pieces/community/instasent/src``:
  ``index.ts``/``lib/auth.ts`` (validate), ``lib/actions/{add-or-update-contact,create-event,
  delete-contact}.ts``, ``lib/common/{constants,types}.ts``.

Each call sends what those clients send: method, path (path segments through
``encodeURIComponent``), query (``?_sync`` bare, ``qs._sync = true`` as ``_sync=true``, index
listings ``_start=0&_limit=N`` and ``_q`` JSON), headers (``Authorization: Bearer``, and
``Content-Type: application/json`` only with a body) and bodies with every value a string.
Then it checks the response keys the client reads. Run against the default fixture.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import requests

from airflow_provider_instasent.emulator import Emulator

ADMIN = "demo-admin-token"  # n8n Product node credentials: apiToken + projectUid
DS_TOKEN = "demo-dsapi-token"  # Activepieces / n8n Ingest credentials: projectId + datasourceId + token
PROJECT = "demo"
DATASOURCE = "dsapi"


def enc(value: str) -> str:
    """JavaScript's ``encodeURIComponent``."""
    return quote(value, safe="-_.!~*'()")


class Client:
    """Sends a request the way ``this.helpers.request`` (n8n) and ``httpClient`` (Activepieces) do."""

    def __init__(self, base_url: str, token: str, prefix: str) -> None:
        self.root = base_url + "/v1"
        self.prefix = prefix
        self.token = token
        self.session = requests.Session()

    def call(self, method: str, endpoint: str, body: Any = None, qs: dict[str, Any] | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        url = self.root + self.prefix + endpoint
        if qs:
            # the request library renders booleans as "true"/"false"
            url += ("&" if "?" in url else "?") + urlencode(
                {k: ("true" if v is True else "false" if v is False else v) for k, v in qs.items()}
            )
        r = self.session.request(method, url, data=data, headers=headers, timeout=30)
        return r

    def ok(self, method: str, endpoint: str, body: Any = None, qs: dict[str, Any] | None = None) -> Any:
        r = self.call(method, endpoint, body, qs)
        assert 200 <= r.status_code < 300, (method, endpoint, r.status_code, r.text)
        return r.json()


@pytest.fixture
def activepieces(emulator: Emulator) -> Client:
    return Client(emulator.base_url, DS_TOKEN, f"/project/{PROJECT}/datasource/{DATASOURCE}")


@pytest.fixture
def n8n_ingest(emulator: Emulator) -> Client:
    return Client(emulator.base_url, DS_TOKEN, f"/project/{PROJECT}/datasource/{DATASOURCE}")


@pytest.fixture
def n8n_product(emulator: Emulator) -> Client:
    return Client(emulator.base_url, ADMIN, "")


@pytest.fixture
def n8n_project(emulator: Emulator) -> Client:
    """``instasentProductApiRequestForProject``: ``/project/{projectUid}`` + endpoint."""
    return Client(emulator.base_url, ADMIN, f"/project/{PROJECT}")


ATTRIBUTE_SPEC_KEYS = {"uid", "displayLabel", "description", "dataType", "multivalue", "readOnly",
                       "requiredInWebhook", "important", "visible", "custom"}  # fmt: skip
EVENT_SPEC_KEYS = {"uid", "name", "emoji"}
PARAMETER_SPEC_KEYS = {"parameter", "title", "description", "dataType", "required", "multiValue"}


def check_attribute_specs(specs: list[dict[str, Any]]) -> None:
    assert specs
    for spec in specs:
        assert set(spec) >= ATTRIBUTE_SPEC_KEYS, spec["uid"]
        assert isinstance(spec["readOnly"], bool) and isinstance(spec["requiredInWebhook"], bool)
    by_uid = {s["uid"]: s for s in specs}
    assert by_uid["_user_id"]["requiredInWebhook"] is True
    assert by_uid["_date_updated"]["readOnly"] is True


def check_push(body: dict[str, Any]) -> None:
    """Activepieces decides success on ``entitiesSuccess !== 1`` and reports ``errors``."""
    assert body["entitiesSuccess"] == 1, body
    assert body["errors"] == []
    assert {"success", "streamId", "projectId", "datasourceId", "accepted"} <= set(body)
    assert body["accepted"][0]["position"] == 0


# --- Activepieces -------------------------------------------------------------------------------
def test_activepieces_validate_auth(activepieces: Client) -> None:
    data = activepieces.ok("GET", "/stream")
    assert data["organization"] and data["stream"] and data["datasource"] and data["project"]


def test_activepieces_add_or_update_contact(activepieces: Client) -> None:
    specs = activepieces.ok("GET", "/stream/specs/attributes")["specs"]
    check_attribute_specs(specs)
    multivalue = [s for s in specs if s["multivalue"] > 1]
    assert multivalue and all(isinstance(s["multivalue"], int) for s in specs)
    # every property is text (ShortText/LongText), booleans "1"/"0"/null, multi-value an array
    contact = {
        "_user_id": "ap-1",
        "_email": "ada@example.com",
        "_phone_mobile": "+34600000001",
        "_first_name": "Ada",
        "loyalty_points": "120",
        "birthday": "1990-02-28",
        "_date_registered": "2024-01-31",
        "_accepts_marketing_sms": "1",
        "_accepts_marketing_email": "0",
        "_is_subscribed_whatsapp": None,
        "_client_tags": ["vip", "newsletter"],
    }
    check_push(activepieces.ok("POST", "/stream/contacts", [contact]))  # queued by default
    check_push(activepieces.ok("POST", "/stream/contacts?_sync", [{**contact, "loyalty_points": "49.90"}]))


def test_activepieces_add_event(activepieces: Client) -> None:
    activepieces.ok("POST", "/stream/contacts?_sync", [{"_user_id": "ap-1"}])
    types = activepieces.ok("GET", "/stream/specs/events")["specs"]
    assert all(set(t) >= EVENT_SPEC_KEYS for t in types)
    params = activepieces.ok("GET", "/stream/specs/event-parameters/ecommerce_order_create")["specs"]
    assert all(set(p) >= PARAMETER_SPEC_KEYS for p in params)
    # event_date left empty is undefined, so absent from the JSON body
    event = {
        "_user_id": "ap-1",
        "_event_id": "ap-e1",
        "_event_type": "ecommerce_order_create",
        "_event_parameters": {"order_id": "o-1", "amount": "49.90", "currency": "EUR", "items": ["a", "b"]},
    }
    check_push(activepieces.ok("POST", "/stream/events", [event]))
    dated = {**event, "_event_id": "ap-e2", "_event_date": "2024-05-01T10:00:00.000Z"}
    check_push(activepieces.ok("POST", "/stream/events", [dated]))


def test_activepieces_delete_contact(activepieces: Client) -> None:
    activepieces.ok("POST", "/stream/contacts?_sync", [{"_user_id": "ap-1"}])
    assert activepieces.ok("DELETE", "/stream/contacts/ap-1")["success"] is True


# --- n8n: Instasent Data Source (Ingest) node ------------------------------------------------------
def test_n8n_ingest_load_options(n8n_ingest: Client) -> None:
    check_attribute_specs(n8n_ingest.ok("GET", "/stream/specs/attributes")["specs"])
    assert all(set(t) >= EVENT_SPEC_KEYS for t in n8n_ingest.ok("GET", "/stream/specs/events")["specs"])
    for etype in ("ecommerce_order_create", "page_view"):
        specs = n8n_ingest.ok("GET", f"/stream/specs/event-parameters/{etype}")["specs"]
        assert specs and all(set(p) >= PARAMETER_SPEC_KEYS for p in specs)


def test_n8n_ingest_contact_upsert_event_and_delete(n8n_ingest: Client) -> None:
    # values typed in a free-text field: all strings, a multi-value attribute as one string
    contact = {"_user_id": "n8n-1", "loyalty_points": "120", "_is_subscribed_sms": "1", "_client_tags": "vip"}
    check_push(n8n_ingest.ok("POST", "/stream/contacts?_sync", [contact]))  # "Instant" on
    check_push(n8n_ingest.ok("POST", "/stream/contacts", [{**contact, "plan": "pro"}]))  # "Instant" off
    event = {
        "_user_id": "n8n-1",
        "_event_id": "n8n-e1",
        "_event_type": "ecommerce_order_create",
        "_event_date": "2024-05-01T10:00:00.000Z",  # or new Date().toISOString()
        "_event_parameters": {"order_id": "o-1", "amount": "120", "items": "sku-1"},
    }
    check_push(n8n_ingest.ok("POST", "/stream/events", [event]))
    assert n8n_ingest.ok("DELETE", "/stream/contacts/n8n-1")["success"] is True


# --- n8n: Instasent Product node ---------------------------------------------------------------------
def test_n8n_product_organization_and_project(n8n_product: Client, n8n_project: Client) -> None:
    projects = n8n_product.ok("GET", "/")["entity"]["projects"]
    assert {p["uid"] for p in projects} == {PROJECT} and all(p["name"] for p in projects)
    assert n8n_project.ok("GET", "")["entity"]["uid"] == PROJECT
    check_attribute_specs(n8n_project.ok("GET", "/specs/attributes")["entities"])
    assert all(set(t) >= EVENT_SPEC_KEYS for t in n8n_project.ok("GET", "/specs/events")["entities"])
    params = n8n_project.ok("GET", "/specs/events/ecommerce_order_create")["entities"]
    assert params and all(set(p) >= PARAMETER_SPEC_KEYS for p in params)


def _seed(n8n_project: Client) -> str:
    """Two contacts and an event through the Data Source Stream operations; the first's audience id."""
    contacts = [
        {"_user_id": "c1", "_email": "ada@example.com", "_phone_mobile": "+34600000001", "plan": "pro"},
        {"_user_id": "c2", "_email": "bob@example.com", "_phone_mobile": "+34600000002"},
    ]
    for c in contacts:
        check_push(n8n_project.ok("POST", "/datasource/dsapi/stream/contacts?_sync", [c]))
    event = {
        "_user_id": "c1",
        "_event_id": "e1",
        "_event_type": "page_view",
        "_event_date": "2024-05-01T10:00:00.000Z",
        "_event_parameters": {"url": "/update"},
    }
    check_push(n8n_project.ok("POST", "/datasource/dsapi/stream/events?_sync", [event]))
    return str(n8n_project.ok("GET", "/audience/user/c1")["entity"]["id"])


AUDIENCE_FILTER = {
    "root": {
        "type": "group",
        "join": "and",
        "children": [{"type": "attribute_condition", "key": "_phone_mobile", "operator": "exists", "values": []}],
    },
    "sortField": "_date_updated",
    "sortAsc": False,
}
EVENT_FILTER = {
    "root": {
        "type": "group",
        "join": "and",
        "children": [
            {"type": "event_condition", "key": "event-type", "operator": "matches-string", "values": ["update"]}
        ],
    },
    "sortField": "created-at",
    "sortAsc": False,
}


def test_n8n_product_audience(n8n_project: Client) -> None:
    aid = _seed(n8n_project)
    assert n8n_project.ok("GET", f"/audience/user/{enc('ada@example.com')}")["entity"]["id"] == aid
    assert n8n_project.ok("GET", f"/audience/{enc(aid)}")["entity"]["id"] == aid
    assert n8n_project.ok("GET", f"/audience/search/phone/{enc('+34 600 000 001')}")["entities"][0]["id"] == aid
    assert n8n_project.ok("GET", f"/audience/search/email/{enc('ada@example.com')}")["entities"][0]["id"] == aid
    events = n8n_project.ok("GET", f"/audience/{enc(aid)}/events")
    assert "page_view" in events["entities"]
    # search: the default filter, limit min(limit, 50)
    found = n8n_project.ok("POST", "/audience/search", {**AUDIENCE_FILTER, "limit": 50})
    assert found["metadata"]["totalHits"] == 2 and len(found["entities"]) == 2
    # scroll: the same filter, limit min(limit, 100), then the cursor from the previous page
    page = n8n_project.ok("POST", "/audience/scroll", {**AUDIENCE_FILTER, "limit": 1})
    assert page["metadata"]["cursor"] and page["metadata"]["totalHits"] == 2
    nxt = n8n_project.ok(
        "POST", "/audience/scroll", {**AUDIENCE_FILTER, "limit": 1, "cursor": page["metadata"]["cursor"]}
    )
    assert nxt["metadata"]["cursor"] is None
    # the same order as search: _date_updated, newest first
    assert [page["entities"][0]["id"], nxt["entities"][0]["id"]] == [e["id"] for e in found["entities"]]
    seg = n8n_project.ok(
        "POST",
        f"/audience/segment/{enc('by_plan')}/scroll",
        {**AUDIENCE_FILTER, "limit": 50},
        {"parameter": "pro|free"},
    )
    assert [e["id"] for e in seg["entities"]] == [aid]
    assert n8n_project.ok("POST", "/audience/segment/pro_plan/scroll", {**AUDIENCE_FILTER, "limit": 50})["entities"]
    # events: the default filter
    ev = n8n_project.ok("POST", "/event/search", {**EVENT_FILTER, "limit": 50})
    assert ev["metadata"]["totalHits"] == 0  # "update" matches no event type of the fixture
    ev = n8n_project.ok("POST", "/event/search", {"limit": 50})
    assert [e["_event_id"] for e in ev["entities"]] == ["e1"]
    sc = n8n_project.ok("POST", "/event/scroll", {**EVENT_FILTER, "limit": 50})
    assert sc["entities"] == [] and sc["metadata"]["cursor"] is None


@pytest.mark.parametrize("sync", [False, True])
def test_n8n_product_audience_actions(n8n_project: Client, sync: bool) -> None:
    aid = _seed(n8n_project)
    qs = {"_sync": True} if sync else {}
    utm = {"reason": "too many", "utm-source": "n8n", "utm-medium": "flow", "utm-campaign": "c"}
    for action, body in [
        ("sms-unsubscribe", {"audienceId": aid, **utm}),
        ("sms-subscribe", {"audienceId": aid}),
        ("email-unsubscribe", {"audienceId": aid, **utm}),
        ("email-subscribe", {"audienceId": aid}),
        ("delete-contact", {"audienceId": aid}),
    ]:
        n8n_project.ok("POST", f"/audience/stream/{action}", body, qs)
    assert n8n_project.call("GET", f"/audience/{aid}").status_code == 404


def test_n8n_product_datasource_stream(n8n_project: Client) -> None:
    _seed(n8n_project)
    ds = "/datasource/dsapi"  # getDatasourceId("") -> "dsapi"
    info = n8n_project.ok("GET", ds + "/stream")
    assert {"organization", "stream", "datasource", "project"} <= set(info)
    check_attribute_specs(n8n_project.ok("GET", ds + "/stream/specs/attributes")["specs"])
    assert n8n_project.ok("GET", ds + "/stream/specs/events")["specs"]
    assert n8n_project.ok("GET", ds + "/stream/specs/event-parameters/page_view")["specs"]
    stats = n8n_project.ok("GET", ds + "/stats")
    assert {"contacts", "events", "datasource"} <= set(stats)
    assert n8n_project.ok("GET", ds + f"/stream/contacts/{enc('c1')}")["contact"]["contactData"]["_user_id"] == "c1"
    check_push(
        n8n_project.ok("POST", ds + "/stream/contacts?_sync&_dryRun", [{"_user_id": "x", "loyalty_points": "5"}])
    )
    check_push(n8n_project.ok("POST", ds + "/stream/contacts?_dryRun", [{"_user_id": "x"}]))
    event = {"_user_id": "c1", "_event_id": "e9", "_event_type": "page_view",
             "_event_date": "2024-05-01T10:00:00.000Z", "_event_parameters": {"url": "/"}}  # fmt: skip
    check_push(n8n_project.ok("POST", ds + "/stream/events?_sync&_dryRun", [event]))
    check_push(n8n_project.ok("POST", ds + "/stream/events", [event]))
    assert n8n_project.ok("DELETE", ds + f"/stream/contacts/{enc('c2')}")["success"] is True


def listing(n: int = 50, q: dict[str, Any] | None = None) -> dict[str, Any]:
    """``buildQueryFilter``: ``_start``/``_limit``, and ``_q`` unless the JSON is ``{}``."""
    qs: dict[str, Any] = {"_start": 0, "_limit": n}
    if q:
        qs["_q"] = json.dumps(q)
    return qs


def test_n8n_product_segments_campaigns_automations_senders(n8n_project: Client) -> None:
    _seed(n8n_project)
    segments = n8n_project.ok("GET", "/segment", None, listing())["entities"]
    assert all({"uid", "name", "type"} <= set(s) for s in segments) and len(segments) == 3
    assert [s["uid"] for s in n8n_project.ok("GET", "/segment/dynamic")["entities"]] == ["pro_plan"]
    assert n8n_project.ok("GET", "/segment/pro_plan")["entity"]["size"] == 1
    assert n8n_project.ok("GET", "/segment/by_plan", None, {"parameter": "pro|free"})["entity"]["size"] == 1
    status_q = {"filter": [{"field": "status", "operator": "in", "value": ["draft", "sent"]}]}
    campaigns = n8n_project.ok("GET", "/campaign", None, listing(50, status_q))
    assert {c["status"] for c in campaigns["entities"]} == {"draft", "sent"}
    for c in n8n_project.ok("GET", "/campaign")["entities"]:  # getCampaigns (load options)
        assert {"id", "title", "campaignAt", "status"} <= set(c)
    assert n8n_project.ok("GET", f"/campaign/{enc('4001')}")["entity"]["title"] == "Welcome spring"
    active_q = {"filter": [{"field": "status", "operator": "in", "value": ["active"]}]}
    automations = n8n_project.ok("GET", "/automation", None, listing(100, active_q))["entities"]
    assert [a["id"] for a in automations] == [5001]
    for a in n8n_project.ok("GET", "/automation")["entities"]:
        assert {"id", "title", "status"} <= set(a)
    assert n8n_project.ok("GET", "/automation/5002")["entity"]["status"] == "paused"
    senders = n8n_project.ok("GET", "/channel/sms/sender", None, listing())["entities"]
    assert all({"id", "from", "status"} <= set(s) for s in senders) and len(senders) == 2


SMS_Q = {"filter": [{"field": "status", "operator": "in", "value": ["delivered", "sent", ["enqueued"]]}]}


def test_n8n_product_sms(n8n_project: Client) -> None:
    aid = _seed(n8n_project)
    # createDirect: sender "default" or an id, audience id or phone, optional utm term
    sent = n8n_project.ok(
        "POST", f"/channel/sms/sms/direct/default/{enc(aid)}", {"text": "Hola", "allowUnicode": False}
    )
    sms_id = sent["entity"]["id"]
    n8n_project.ok("POST", f"/channel/sms/sms/direct/{enc('6002')}/{enc('+34600000002')}/{enc('spring')}",
                   {"text": "Olá ✓", "allowUnicode": True})  # fmt: skip
    assert n8n_project.ok("GET", f"/channel/sms/sms/{enc(sms_id)}")["entity"]["text"] == "Hola"
    by_aud = n8n_project.ok("GET", f"/channel/sms/sms/audience/{enc(aid)}", None, listing(50, SMS_Q))
    assert [s["id"] for s in by_aud["entities"]] == [sms_id] and by_aud["metadata"]["count"] == 1
    by_phone = n8n_project.ok("GET", f"/channel/sms/sms/audience/{enc('+34600000002')}", None, listing(50, SMS_Q))
    assert len(by_phone["entities"]) == 1
    assert len(n8n_project.ok("GET", "/channel/sms/sms/direct", None, listing(50, SMS_Q))["entities"]) == 2
    assert len(n8n_project.ok("GET", "/channel/sms/sms/direct/spring", None, listing(50, SMS_Q))["entities"]) == 1
    for endpoint in ("/channel/sms/sms/send/send-1", "/channel/sms/sms/campaign/4001/0",
                     "/channel/sms/sms/automation/5001/0"):  # fmt: skip
        page = n8n_project.ok("GET", endpoint, None, listing(50, SMS_Q))
        assert page["entities"] == [] and page["metadata"] == {"count": 0, "start": 0, "limit": 50}


def test_n8n_stream_specs_event_parameters_without_an_event_type_is_unknown(n8n_project: Client) -> None:
    # n8n's "Get Stream Specs" sends this when "Event Type" is left empty; what the real API
    # answers is unknown (docs/emulator.md, "Unknown"): the emulator answers a JSON 404
    r = n8n_project.call("GET", "/datasource/dsapi/stream/specs/event-parameters")
    assert r.status_code == 404 and "message" in r.json()
