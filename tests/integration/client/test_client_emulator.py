"""The client against the emulator over real HTTP, one test per endpoint group."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests

from airflow_provider_instasent.client import (
    AuthenticationError,
    BadRequestError,
    InstasentClient,
    InstasentConfigError,
    InstasentConnectionError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from tests.conftest import ADMIN_TOKEN, PROJECT, READONLY_TOKEN, emulator_state

pytestmark = pytest.mark.integration


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def faults(url: str, **settings) -> None:
    requests.post(f"{url}/_emulator/faults", json=settings, timeout=10).raise_for_status()


def seed_contacts(client: InstasentClient) -> None:
    result = client.push_contacts([
        {"_user_id": "u1", "_first_name": "Ada", "_email": "ada@example.com", "_phone_mobile": "+34600000001",
         "plan": "pro", "loyalty_points": 10},
        {"_user_id": "u2", "_first_name": "Bob", "_email": "bob@example.com", "plan": "free"},
        {"_user_id": "u3", "_first_name": "Cy", "_phone_mobile": "+34600000003", "plan": "pro"},
    ])
    assert result.ok, result.errors
    assert client.push_contacts([{"_user_id": "c-9", "_email": "ada@example.com", "_last_name": "Lovelace"}],
                                datasource="crm").ok


def test_token_and_project(client):
    info = client.get_token_info()
    assert PROJECT in [p["uid"] for p in info["entity"]["projects"]]
    assert "PROJECT_AUDIENCE_LIST" in client.token_scopes()
    project = client.get_project()
    assert project["entity"]["uid"] == PROJECT


def test_project_and_stream_specs(client):
    attrs = {a["uid"]: a for a in client.get_attribute_specs()}
    assert {"_user_id", "plan", "loyalty_points", "birthday"} <= set(attrs)
    events = {e["uid"] for e in client.get_event_specs()}
    assert {"ecommerce_order_create", "page_view"} <= events
    params = {p["parameter"]: p for p in client.get_event_parameter_specs("ecommerce_order_create")}
    assert params["order_id"]["required"] and params["order_id"]["maxLength"] == 64
    assert {a["uid"] for a in client.get_stream_attribute_specs()} >= {"plan"}
    assert {e["uid"] for e in client.get_stream_event_specs()} >= {"page_view"}
    sparams = {p["parameter"]: p for p in client.get_stream_event_parameter_specs("ecommerce_order_create")}
    assert sparams["items"]["multiValue"] == 10
    with pytest.raises(NotFoundError):
        client.get_event_parameter_specs("no_such_event")


def test_datasources(client):
    uids = [d["uid"] for d in client.list_datasources(page_size=1)]
    assert "dsapi" in uids and "crm" in uids
    assert client.get_datasource("crm")["uid"] == "crm"
    created = client.create_datasource("shop", ["shop"])
    assert created["uid"]
    assert created["uid"] in [d["uid"] for d in client.list_datasources()]


def test_ingest_roundtrip(client, emu):
    seed_contacts(client)
    stream = client.get_stream()
    assert {"organization", "project", "datasource", "stream"} <= set(stream)
    assert client.get_contact("u1")["contactData"]["_first_name"] == "Ada"
    dry = client.push_events([{"_user_id": "u1", "_event_id": "e-dry", "_event_type": "page_view",
                               "_event_parameters": {"url": "https://x"}}], dry_run=True)
    assert dry.dry_run and dry.accepted == [0]
    assert emulator_state(emu)["events"] == 0
    result = client.push_events([
        {"_user_id": "u1", "_event_id": "e1", "_event_type": "page_view", "_event_date": now_iso(),
         "_event_parameters": {"url": "https://x"}},
        {"_user_id": "u1", "_event_id": "e2", "_event_type": "page_view", "_event_parameters": {}},
    ], sync=True)
    assert result.accepted == [0]
    assert result.errors[0].position == 1
    assert "_event_parameters.url" in result.errors[0].fields
    assert emulator_state(emu)["events"] == 1
    stats = client.get_stats()
    assert stats["contacts"]["total"] == 3
    deleted = client.delete_contact("u3")
    assert deleted.ok
    with pytest.raises(NotFoundError):
        client.get_contact("u3")


def test_all_items_invalid_is_a_result_not_an_exception(client):
    result = client.push_contacts([{"_user_id": "x", "loyalty_points": "lots"}])
    assert result.status == 422 and result.accepted == [] and result.errors[0].position == 0


def test_batch_limit_is_enforced_both_sides(client, emu):
    with pytest.raises(InstasentConfigError):
        client.push_contacts([{"_user_id": str(i)} for i in range(101)])
    raw = requests.post(f"{emu}/v1/project/demo/datasource/dsapi/stream/contacts",
                        json=[{"_user_id": str(i)} for i in range(101)],
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    assert raw.status_code == 400
    with pytest.raises(BadRequestError):
        client.push("contacts", b'{"not": "an array"}', n_items=1)


def test_audience_reads(client):
    seed_contacts(client)
    merged = client.get_audience_contact_by_user("u1")
    attrs = merged["attributesData"]
    assert set(attrs["_datasources"]) == {"dsapi", "crm"}
    assert attrs["_last_name"] == "Lovelace"
    assert client.get_audience_contact(merged["id"])["id"] == merged["id"]
    assert [c["id"] for c in client.search_audience_by_email("ada@example.com")] == [merged["id"]]
    assert [c["id"] for c in client.search_audience_by_phone("+34 600 000 001")] == [merged["id"]]
    found = client.search_audience({"type": "group", "join": "and", "children": [
        {"type": "attribute_condition", "key": "plan", "operator": "eq", "values": ["pro"]}]}, limit=500)
    assert len(found) == 2
    scrolled = list(client.scroll_audience(page_size=1))
    assert len(scrolled) == 3 and len({c["id"] for c in scrolled}) == 3
    pages = list(client.scroll_audience_pages(page_size=2))
    assert pages[0].total_hits == 3 and pages[-1].cursor is None
    aggs = client.aggregate_audience({"plans": {"type": "terms", "field": "plan"}})
    assert "plans" in aggs["entities"]


def test_segments_and_segment_scroll(client):
    seed_contacts(client)
    segments = list(client.list_segments())
    assert segments
    dynamic = client.list_dynamic_segments()
    pro = next(s for s in dynamic if "pro" in s["uid"])
    members = list(client.scroll_segment(pro["uid"]))
    assert len(members) == 2
    assert client.get_segment(pro["uid"])["uid"] == pro["uid"]


def test_audience_actions_and_events(client):
    seed_contacts(client)
    aid = client.get_audience_contact_by_user("u1")["id"]
    client.push_events([{"_user_id": "u1", "_event_id": "o1", "_event_type": "ecommerce_order_create",
                         "_event_parameters": {"order_id": "A1", "amount": 9.5, "currency": "EUR"}}])
    timeline = client.get_audience_events(aid)
    assert "ecommerce_order_create" in timeline
    assert [e["_event_id"] for e in client.scroll_events()] == ["o1"]
    assert len(client.search_events()) == 1
    client.audience_action("sms-unsubscribe", aid, reason="asked", sync=True)
    assert client.get_audience_contact(aid)["attributesData"].get("_is_subscribed_sms") in (False, 0, "0")
    client.audience_action("delete-contact", aid)
    with pytest.raises(NotFoundError):
        client.get_audience_contact(aid)
    with pytest.raises(InstasentConfigError):
        client.audience_action("explode", aid)


def test_campaigns_automations_sms(client):
    seed_contacts(client)
    campaigns = list(client.list_campaigns())
    assert campaigns and client.get_campaign(campaigns[0]["id"])["id"] == campaigns[0]["id"]
    automations = list(client.list_automations())
    assert automations and client.get_automation(automations[0]["id"])["id"] == automations[0]["id"]
    senders = client.list_sms_senders()
    assert senders["entities"] and "defaultSender" in senders["metadata"]
    aid = client.get_audience_contact_by_user("u1")["id"]
    sms = client.send_direct_sms(aid, "Hello Ada", utm_term="welcome")
    assert sms["id"] and client.get_sms(sms["id"])["id"] == sms["id"]
    assert [s["id"] for s in client.list_sms_for_audience(aid)] == [sms["id"]]
    assert [s["id"] for s in client.list_direct_sms()] == [sms["id"]]
    with pytest.raises(InstasentConfigError):
        client.send_direct_sms(aid, "x", utm_term="u" * 41)


def test_error_mapping_over_http(emu):
    with InstasentClient(token="nope-nope", project=PROJECT, base_url=emu) as bad:
        with pytest.raises(AuthenticationError) as exc:
            bad.get_project()
        assert exc.value.status == 401 and "nope-nope" not in str(exc.value)
    with InstasentClient(token=READONLY_TOKEN, project=PROJECT, base_url=emu) as ro:
        with pytest.raises(PermissionDeniedError) as exc:
            list(ro.scroll_audience())
        assert exc.value.missing_scope == "PROJECT_AUDIENCE_LIST"
        assert exc.value.endpoint == "/project/{project}/audience/scroll"
        assert "grant the token the scope PROJECT_AUDIENCE_LIST" in str(exc.value)
    with InstasentClient(token=ADMIN_TOKEN, project="no-such-project", base_url=emu) as other:
        with pytest.raises(NotFoundError):
            other.get_project()


def test_retries_through_server_errors_and_drops(client, emu):
    seed_contacts(client)
    faults(emu, fault_rate=0.5, seed=3)
    for _ in range(20):
        assert client.get_audience_contact_by_user("u1")["id"]
    assert client.stats.snapshot()["retries"] > 0


def test_gives_up_after_max_retries(emu):
    faults(emu, fault_rate=1.0, fault_kinds=["503"])
    with InstasentClient(token=ADMIN_TOKEN, project=PROJECT, base_url=emu, max_retries=2,
                         backoff_base=0.01) as c:
        with pytest.raises(ServerError) as exc:
            c.get_project()
    assert exc.value.attempts == 3 and exc.value.status == 503


def test_sms_is_never_retried_after_an_ambiguous_failure(client, emu):
    seed_contacts(client)
    aid = client.get_audience_contact_by_user("u1")["id"]
    faults(emu, fault_rate=1.0, fault_kinds=["drop_after"])
    with pytest.raises(InstasentConnectionError) as exc:
        client.send_direct_sms(aid, "only once")
    assert exc.value.attempts == 1
    faults(emu, fault_rate=0.0)
    assert len(list(client.list_sms_for_audience(aid))) == 1  # sent once, not twice


def test_rate_limit_429_is_retried_and_paced(emu):
    faults(emu, rate_limit=120)  # 2 requests/s per class
    with InstasentClient(token=ADMIN_TOKEN, project=PROJECT, base_url=emu, backoff_base=0.01) as c:
        for _ in range(6):
            c.get_project()
        snap = c.stats.snapshot()
    assert snap["statuses"].get(200) == 6
    assert snap["statuses"].get(429, 0) <= 2
    with InstasentClient(token=ADMIN_TOKEN, project=PROJECT, base_url=emu, max_retries=0, pace=False) as c:
        with pytest.raises(RateLimitError) as exc:
            for _ in range(20):
                c.get_project()
        assert exc.value.retry_after is not None and exc.value.retry_after >= 1


def test_sms_listings_of_every_kind(client):
    """Each SMS listing of ``endpoints.SMS_LISTS`` answers over HTTP as n8n calls it (issue 14 item 3)."""
    seed_contacts(client)
    aid = client.get_audience_contact_by_user("u1")["id"]
    by_phone = client.send_direct_sms("+34600000001", "Sent to a phone number")  # a phone where an id goes
    by_id = client.send_direct_sms(aid, "Sent to an audience id", utm_term="promo")
    assert by_phone["audienceContact"]["id"] == aid
    # the listing by audience takes the phone number too, and _q filters it
    assert {s["id"] for s in client.list_sms_for_audience("+34600000001")} == {by_phone["id"], by_id["id"]}
    only = client.list_sms_for_audience(aid, query={"filter": [{"field": "text", "operator": "eq",
                                                                 "value": "Sent to a phone number"}]})
    assert [s["id"] for s in only] == [by_phone["id"]]
    assert [s["id"] for s in client.list_direct_sms("promo")] == [by_id["id"]]
    # paging with _start/_limit reads every page
    assert len(list(client.list_sms_for_audience(aid, page_size=1))) == 2
    # campaign, automation and send listings: no direct SMS belongs to them
    campaign = next(iter(client.list_campaigns()))["id"]
    automation = next(iter(client.list_automations()))["id"]
    assert list(client.list_sms_for_campaign(campaign, 0)) == []
    assert list(client.list_sms_for_automation(automation, 1)) == []
    assert list(client.list_sms_for_send("no-such-send")) == []
    with pytest.raises(NotFoundError):
        list(client.list_sms_for_campaign("999999", 0))
    with pytest.raises(InstasentConfigError, match="missing option_idx"):
        list(client.list_sms("campaign", campaign_id=campaign))
    with pytest.raises(InstasentConfigError, match="paging"):
        list(client.list_sms("direct", query={"paging": {"start": 0, "limit": 5}}))
