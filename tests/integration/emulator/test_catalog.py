"""Index endpoints (Query Filter), segments, campaigns, automations, SMS senders and SMS."""

from __future__ import annotations

from .conftest import Api


def test_query_filter_start_and_limit_both_or_neither(api: Api) -> None:
    assert api.get(api.p("/campaign?_start=0")).status_code == 400
    assert api.get(api.p("/campaign?_limit=1")).status_code == 400
    page = api.get(api.p("/campaign?_start=1&_limit=1")).json()
    assert len(page["entities"]) == 1 and page["metadata"] == {"count": 3, "start": 1, "limit": 1}


def test_query_filter_sort_and_field_operators(api: Api) -> None:
    body = api.get(api.p("/campaign?_sort=title:-")).json()
    assert [c["title"] for c in body["entities"]] == ["Welcome spring", "Summer sale", "Black Friday"]
    assert [
        c["id"] for c in api.get(api.p("/campaign?status_in=draft,sent&_sort=id")).json()["entities"]
    ] == [4001, 4002]
    assert [a["id"] for a in api.get(api.p("/automation?status_eq=active")).json()["entities"]] == [5001]
    q = '{"filter":[{"field":"status","operator":"eq","value":"paused"}]}'
    assert [a["id"] for a in api.get(api.p("/automation"), params={"_q": q}).json()["entities"]] == [5002]


def test_campaign_and_automation_get(api: Api) -> None:
    assert api.get(api.p("/campaign/4002")).json()["entity"]["title"] == "Summer sale"
    assert api.get(api.p("/campaign/1")).status_code == 404
    assert api.get(api.p("/automation/5001")).json()["entity"]["status"] == "active"


def test_segments_index_dynamic_and_get(api: Api) -> None:
    api.push_contacts([{"_user_id": "vip-1", "plan": "pro"}, {"_user_id": "u2", "plan": "pro"}])
    uids = [s["uid"] for s in api.get(api.p("/segment")).json()["entities"]]
    assert uids == ["vip_static", "pro_plan", "by_plan"]
    assert [s["uid"] for s in api.get(api.p("/segment/dynamic")).json()["entities"]] == ["pro_plan"]
    seg = api.get(api.p("/segment/pro_plan")).json()["entity"]
    assert seg["type"] == "dynamic" and seg["size"] == 2
    assert api.get(api.p("/segment/vip_static")).json()["entity"]["size"] == 1
    assert api.get(api.p("/segment/by_plan?parameter=pro|free")).json()["entity"]["size"] == 2
    assert api.get(api.p("/segment/nope")).status_code == 404


def test_senders_and_direct_sms(api: Api) -> None:
    senders = api.get(api.p("/channel/sms/sender")).json()
    assert [s["from"] for s in senders["entities"]] == ["DemoShop", "DemoAlerts"]
    assert senders["metadata"]["defaultSender"]["id"] == 6001
    api.push_contacts([{"_user_id": "u1", "_phone_mobile": "+34600000001"}, {"_user_id": "nophone"}])
    aid = api.audience_by_user("u1").json()["entity"]["id"]
    r = api.post(api.p(f"/channel/sms/sms/direct/default/{aid}/spring-promo"), json={"text": "Hola!"})
    assert r.status_code == 201
    sms = r.json()["entity"]
    assert sms["from"] == "DemoShop" and sms["to"] == "+34600000001" and sms["messagesCount"] == 1
    assert sms["audienceContact"]["id"] == aid
    assert api.get(api.p(f"/channel/sms/sms/{sms['id']}")).json()["entity"]["text"] == "Hola!"
    assert len(api.get(api.p(f"/channel/sms/sms/audience/{aid}")).json()["entities"]) == 1
    assert len(api.get(api.p("/channel/sms/sms/direct")).json()["entities"]) == 1
    assert len(api.get(api.p("/channel/sms/sms/direct/spring-promo")).json()["entities"]) == 1
    r = api.post(
        api.p(f"/channel/sms/sms/direct/6002/{aid}"), json={"text": "Ünïcødé ✓", "allowUnicode": True}
    )
    assert r.status_code == 201 and r.json()["entity"]["encoding"] == "UCS2"
    assert api.post(api.p(f"/channel/sms/sms/direct/6002/{aid}"), json={"text": "✓"}).status_code == 400


def test_sms_send_rules(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1", "_phone_mobile": "+34600000001"}, {"_user_id": "nophone"}])
    aid = api.audience_by_user("u1").json()["entity"]["id"]
    no_phone = api.audience_by_user("nophone").json()["entity"]["id"]
    assert (
        api.post(api.p(f"/channel/sms/sms/direct/default/{aid}/{'x' * 41}"), json={"text": "a"}).status_code
        == 400
    )
    assert (
        api.post(api.p(f"/channel/sms/sms/direct/default/{aid}/{'x' * 40}"), json={"text": "a"}).status_code
        == 201
    )
    r = api.post(api.p(f"/channel/sms/sms/direct/default/{no_phone}"), json={"text": "a"})
    assert r.status_code == 422 and "phone" in r.json()["message"]
    assert api.post(api.p(f"/channel/sms/sms/direct/default/{aid}"), json={}).status_code == 400
    assert api.post(api.p(f"/channel/sms/sms/direct/999/{aid}"), json={"text": "a"}).status_code == 404
    assert api.post(api.p("/channel/sms/sms/direct/default/nope"), json={"text": "a"}).status_code == 404
    ro = api.as_token("demo-readonly-token")
    assert (
        ro.post(ro.p(f"/channel/sms/sms/direct/default/{aid}"), json={"text": "a"}).json()["missingScope"]
        == "PROJECT_DIRECT_WRITE"
    )
