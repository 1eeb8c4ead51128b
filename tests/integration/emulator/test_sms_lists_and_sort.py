"""SMS lists by send, campaign option and automation message; a phone where an audience id is
expected; ``sortField``/``sortAsc`` on scrolls (all sent by Instasent's n8n node)."""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_instasent.emulator import Emulator

from .conftest import Api, order


def _seed_sms(emulator: Emulator, sms_id: str, **metadata: Any) -> None:
    """An SMS of a campaign/automation (the emulator never sends those itself)."""
    ps = emulator.store.projects["demo"]
    with emulator.store.lock:
        ps.sms[sms_id] = {
            "id": sms_id,
            "to": "+34600000009",
            "normalizedTo": "+34600000009",
            "text": "hi",
            "status": metadata.pop("status", "delivered"),
            "source": metadata.pop("source", "campaign"),
            "metadata": metadata,
            "audienceContact": {"id": "none", "project": "demo"},
        }


def test_sms_lists_by_send_campaign_and_automation(api: Api, emulator: Emulator) -> None:
    _seed_sms(emulator, "s1", campaignId=4001, optionIdx=0, sendId="send-1")
    _seed_sms(emulator, "s2", campaignId=4001, optionIdx=1, sendId="send-1", status="sent")
    _seed_sms(emulator, "s3", campaignId=4001, optionIdx=0, sendId="send-2", status="failed")
    _seed_sms(emulator, "s4", automationId=5001, messageIdx=0, source="automation")
    ids = lambda r: [e["id"] for e in r.json()["entities"]]  # noqa: E731
    assert ids(api.get(api.p("/channel/sms/sms/send/send-1"))) == ["s1", "s2"]
    assert ids(api.get(api.p("/channel/sms/sms/campaign/4001/0"))) == ["s1", "s3"]
    assert ids(api.get(api.p("/channel/sms/sms/campaign/4001/1"))) == ["s2"]
    assert ids(api.get(api.p("/channel/sms/sms/automation/5001/0"))) == ["s4"]
    assert ids(api.get(api.p("/channel/sms/sms/automation/5001/1"))) == []
    # _start/_limit and _q, as n8n sends them (its default filter nests one value in an array)
    q = json.dumps({"filter": [{"field": "status", "operator": "in", "value": ["delivered", "sent", ["enqueued"]]}]})
    r = api.get(api.p("/channel/sms/sms/campaign/4001/0"), params={"_start": 0, "_limit": 50, "_q": q})
    assert ids(r) == ["s1"] and r.json()["metadata"] == {"count": 1, "start": 0, "limit": 50}
    r = api.get(api.p("/channel/sms/sms/send/send-1"), params={"_start": 1, "_limit": 1})
    assert ids(r) == ["s2"] and r.json()["metadata"]["count"] == 2
    # unknown campaign/automation: 404; a non-integer index: 400; an unknown send: empty
    assert api.get(api.p("/channel/sms/sms/campaign/999/0")).status_code == 404
    assert api.get(api.p("/channel/sms/sms/automation/999/0")).status_code == 404
    assert api.get(api.p("/channel/sms/sms/campaign/4001/x")).status_code == 400
    assert api.get(api.p("/channel/sms/sms/automation/5001/-1")).status_code == 400
    assert ids(api.get(api.p("/channel/sms/sms/send/nope"))) == []
    ro = api.as_token("demo-readonly-token")
    assert ro.get(ro.p("/channel/sms/sms/send/send-1")).json()["missingScope"] == "PROJECT_DIRECT_READ"


def test_phone_number_where_an_audience_id_is_expected(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1", "_phone_mobile": "+34 600 000 001"}])
    aid = api.audience_by_user("u1").json()["entity"]["id"]
    for phone in ("+34600000001", "%2B34600000001", "0034600000001", "+34 600-000-001"):
        r = api.post(api.p(f"/channel/sms/sms/direct/default/{phone}"), json={"text": "Hola"})
        assert r.status_code == 201, (phone, r.text)
        assert r.json()["entity"]["audienceContact"]["id"] == aid
    assert len(api.get(api.p("/channel/sms/sms/audience/+34600000001")).json()["entities"]) == 4
    assert len(api.get(api.p(f"/channel/sms/sms/audience/{aid}")).json()["entities"]) == 4
    # the international code is mandatory; an unknown phone is 404 like an unknown audience id
    assert api.post(api.p("/channel/sms/sms/direct/default/600000001"), json={"text": "a"}).status_code == 404
    assert api.post(api.p("/channel/sms/sms/direct/default/+34699999999"), json={"text": "a"}).status_code == 404
    assert api.get(api.p("/channel/sms/sms/audience/+34699999999")).json()["entities"] == []


def test_project_attribute_specs_carry_readOnly_and_requiredInWebhook(api: Api) -> None:
    project = {a["uid"]: a for a in api.get(api.p("/specs/attributes")).json()["entities"]}
    stream = {a["uid"]: a for a in api.get(api.ds(path="/stream/specs/attributes")).json()["specs"]}
    for uid, spec in project.items():
        assert spec["readOnly"] == spec["readonly"] == stream[uid]["readOnly"], uid
        assert spec["requiredInWebhook"] == stream[uid]["requiredInWebhook"], uid
    assert project["_date_imported"]["readOnly"] is True and project["plan"]["readOnly"] is False


def test_audience_scroll_honours_sortField_and_sortAsc(api: Api) -> None:
    api.push_contacts([{"_user_id": f"u{i}", "loyalty_points": p} for i, p in enumerate([5, 1, 9, 3])])
    api.push_contacts([{"_user_id": "u4"}])  # no value: last, as search does

    def users(body: dict[str, Any], path: str = "/audience/scroll") -> list[str]:
        entities, _ = api.scroll_all(path, {**body, "limit": 2})
        return [e["attributesData"]["_user_id"] for e in entities]

    assert users({"sortField": "loyalty_points", "sortAsc": False}) == ["u2", "u0", "u3", "u1", "u4"]
    assert users({"sortField": "loyalty_points"}) == ["u1", "u3", "u0", "u2", "u4"]
    search = api.post(api.p("/audience/search"), json={"sortField": "loyalty_points", "sortAsc": False}).json()
    assert [e["attributesData"]["_user_id"] for e in search["entities"]] == ["u2", "u0", "u3", "u1", "u4"]
    # n8n's default scroll: _date_updated, newest first
    api.push_contacts([{"_user_id": "u1", "plan": "pro"}])
    assert users({"sortField": "_date_updated", "sortAsc": False})[0] == "u1"
    # without sortField: audience id order, as before
    assert users({}) == ["u0", "u1", "u2", "u3", "u4"]


def test_event_scroll_honours_sortField_and_sortAsc(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1"}])
    dates = ["2024-01-02T00:00:00Z", "2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z"]
    api.push_events([order(f"e{i}", _event_date=d) for i, d in enumerate(dates)])

    def ids(body: dict[str, Any]) -> list[str]:
        entities, _ = api.scroll_all("/event/scroll", {**body, "limit": 2})
        return [e["_event_id"] for e in entities]

    assert ids({"sortField": "created-at", "sortAsc": False}) == ["e2", "e0", "e1"]
    assert ids({"sortField": "created-at", "sortAsc": True}) == ["e1", "e0", "e2"]
    assert ids({}) == ["e0", "e1", "e2"]  # reception order, as before
    r = api.post(api.p("/event/scroll"), json={"sortField": "nope"})
    assert r.status_code == 400
