"""The unified audience: merging across datasources, priority, source tracking, timeline,
lookups, search, aggregations and audience actions."""

from __future__ import annotations

from .conftest import Api, order


def entity(api: Api, user_id: str) -> dict:
    r = api.audience_by_user(user_id)
    assert r.status_code == 200, r.text
    return dict(r.json()["entity"])


def test_audience_contact_shape(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1", "_email": "u1@example.com"}])
    e = entity(api, "u1")
    assert set(e) == {
        "id",
        "attributesData",
        "audienceIds",
        "dsIds",
        "dsContactIds",
        "createdAt",
        "updatedAt",
        "indexedAt",
        "deletedAt",
    }
    assert e["deletedAt"] is None and e["dsIds"] == [3001]
    assert e["attributesData"]["_datasources"] == ["dsapi"]
    assert e["attributesData"]["_ds_contact_ids"] == e["dsContactIds"]
    assert api.get(api.p(f"/audience/{e['id']}")).json()["entity"]["id"] == e["id"]


def test_merge_by_user_id_across_datasources(api: Api) -> None:
    api.push_contacts([{"_user_id": "12345", "_first_name": "Ada"}])
    api.push_contacts([{"_user_id": "12345", "loyalty_points": 7}], ds="crm")
    assert api.state()["audience_contacts"] == 1
    attrs = entity(api, "12345")["attributesData"]
    assert attrs["_first_name"] == "Ada" and attrs["loyalty_points"] == 7
    assert attrs["_datasources"] == ["dsapi", "crm"] and len(attrs["_ds_contact_ids"]) == 2


def test_merge_by_email_normalised(api: Api) -> None:
    api.push_contacts([{"_user_id": "web-1", "_email": "Ada@Example.com"}])
    api.push_contacts([{"_user_id": "crm-9", "_email": " ada@example.com "}], ds="crm")
    assert api.state()["audience_contacts"] == 1
    assert entity(api, "web-1")["id"] == entity(api, "crm-9")["id"]


def test_merge_is_transitive_via_phone(api: Api) -> None:
    api.push_contacts([{"_user_id": "a", "_email": "a@example.com"}])
    api.push_contacts(
        [{"_user_id": "b", "_email": "a@example.com", "_phone_mobile": "+34 600 000 001"}], ds="crm"
    )
    api.push_contacts([{"_user_id": "c", "_phone_mobile": "0034600000001"}])
    assert api.state()["audience_contacts"] == 1
    e = entity(api, "c")
    assert sorted(e["attributesData"]["_datasources"]) == ["crm", "dsapi"]
    assert len(e["dsContactIds"]) == 3


def test_conflicts_resolved_by_datasource_priority(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1", "plan": "free", "_last_name": "Byron"}], ds="crm")
    api.push_contacts([{"_user_id": "u1", "plan": "pro"}])
    attrs = entity(api, "u1")["attributesData"]
    assert attrs["plan"] == "pro"  # dsapi (priority 1) beats crm
    assert attrs["_last_name"] == "Byron"  # crm fills what dsapi has no value for
    api.push_contacts([{"_user_id": "u1", "plan": "enterprise"}], ds="crm")  # a later crm write still loses
    assert entity(api, "u1")["attributesData"]["plan"] == "pro"
    api.push_contacts([{"_user_id": "u1", "plan": None}])  # cleared in dsapi: crm's value shows through
    assert entity(api, "u1")["attributesData"]["plan"] == "enterprise"


def test_audience_id_stable_while_oldest_member_stays(api: Api) -> None:
    api.push_contacts([{"_user_id": "old", "_email": "x@example.com"}])
    aid = entity(api, "old")["id"]
    api.push_contacts([{"_user_id": "new", "_email": "x@example.com"}], ds="crm")
    assert entity(api, "new")["id"] == aid
    api.push_contacts([{"_user_id": "new", "_email": "other@example.com"}], ds="crm")  # split again
    assert entity(api, "old")["id"] == aid
    assert entity(api, "new")["id"] != aid
    assert api.state()["audience_contacts"] == 2


def test_one_merged_event_timeline(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1", "_email": "ada@example.com"}])
    api.push_contacts([{"_user_id": "crm-1", "_email": "ada@example.com"}], ds="crm")
    api.push_events([order("a", _event_date="2024-01-01T10:00:00Z")])
    api.push_events(
        [
            order("b", user_id="crm-1", _event_date="2024-01-02T10:00:00Z"),
            {
                "_user_id": "crm-1",
                "_event_id": "c",
                "_event_type": "page_view",
                "_event_parameters": {"url": "https://x"},
            },
        ],
        ds="crm",
    )
    aid = entity(api, "u1")["id"]
    timeline = api.get(api.p(f"/audience/{aid}/events")).json()["entities"]
    assert [e["_event_id"] for e in timeline["ecommerce_order_create"]] == ["b", "a"]  # newest first
    assert [e["_event_id"] for e in timeline["page_view"]] == ["c"]
    ev = timeline["ecommerce_order_create"][0]
    assert set(ev) == {
        "id",
        "_event_id",
        "_event_type",
        "_event_date",
        "_event_parameters",
        "_user_id",
        "audienceId",
        "datasource",
        "receivedAt",
    }
    assert ev["audienceId"] == aid and ev["datasource"] == "crm"


def test_lookup_by_phone_normalised_and_by_email(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1", "_phone_mobile": "+34 600-000-000", "_email": "Ada@Example.com"}])
    for phone in ("%2B34600000000", "34600000000", "0034600000000", "(34)600 000 000"):
        found = api.get(api.p(f"/audience/search/phone/{phone}")).json()["entities"]
        assert len(found) == 1, phone
    assert api.get(api.p("/audience/search/phone/34999")).json() == {"entities": []}
    assert len(api.get(api.p("/audience/search/email/ada@example.com")).json()["entities"]) == 1


def test_lookups_return_at_most_ten(make_emulator) -> None:
    # with _user_id as the only merging attribute, twelve contacts can share a phone and an email
    emu = make_emulator(
        {"extends": "default", "projects": [{"uid": "demo", "mergingAttributes": ["_user_id"]}]}
    )
    api = Api(emu.base_url)
    api.push_contacts(
        [
            {"_user_id": f"u{i}", "_email": "same@example.com", "_phone_mobile": "+34600000000"}
            for i in range(12)
        ]
    )
    assert api.state()["audience_contacts"] == 12
    assert len(api.get(api.p("/audience/search/phone/+34600000000")).json()["entities"]) == 10
    assert len(api.get(api.p("/audience/search/email/SAME@example.com")).json()["entities"]) == 10


def test_user_lookup_by_unique_attribute(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1", "_email": "ada@example.com"}])
    assert entity(api, "ada@example.com")["attributesData"]["_user_id"] == "u1"
    assert api.audience_by_user("nobody").status_code == 404


def test_search_capped_at_50(api: Api) -> None:
    api.push_contacts([{"_user_id": f"u{i:03d}", "loyalty_points": i} for i in range(100)])
    api.push_contacts([{"_user_id": f"v{i:03d}", "loyalty_points": 100 + i} for i in range(20)])
    r = api.post(api.p("/audience/search"), json={"limit": 80})
    body = r.json()
    assert len(body["entities"]) == 50 and body["metadata"] == {"totalHits": 120, "limit": 50, "offset": 0}
    r = api.post(
        api.p("/audience/search"),
        json={
            "limit": 5,
            "offset": 2,
            "sortField": "loyalty_points",
            "sortAsc": False,
            "root": {
                "type": "attribute_condition",
                "key": "loyalty_points",
                "operator": "range-number",
                "values": {"lowerNumber": 10, "upperNumber": 50},
            },
        },
    )
    body = r.json()
    assert body["metadata"]["totalHits"] == 41
    assert [e["attributesData"]["loyalty_points"] for e in body["entities"]] == [48, 47, 46, 45, 44]


def test_aggregations(api: Api) -> None:
    api.push_contacts(
        [{"_user_id": f"u{i}", "plan": "pro" if i % 3 else "free"} for i in range(9)] + [{"_user_id": "none"}]
    )
    r = api.post(
        api.p("/audience/aggregations"),
        json={"aggregations": {"plans": {"type": "terms", "field": "plan"}, "total": {"type": "count"}}},
    )
    body = r.json()
    assert body["metadata"]["totalHits"] == 10
    assert body["entities"]["plans"]["buckets"] == [{"key": "pro", "count": 6}, {"key": "free", "count": 3}]
    assert body["entities"]["total"]["value"] == 10
    assert api.post(api.p("/audience/aggregations"), json={}).status_code == 400
    bad = api.post(
        api.p("/audience/aggregations"), json={"aggregations": {"x": {"type": "median", "field": "a"}}}
    )
    assert bad.status_code == 400 and "median" in bad.json()["message"]


def test_audience_actions_subscribe_and_delete(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1", "_email": "ada@example.com"}])
    api.push_contacts([{"_user_id": "u1"}], ds="crm")
    api.push_events([order("e1")])
    aid = entity(api, "u1")["id"]
    r = api.post(api.p("/audience/stream/sms-unsubscribe"), json={"audienceId": aid, "reason": "asked"})
    assert r.status_code == 202
    assert r.json() == {"entity": {"audienceId": aid, "action": "sms-unsubscribe", "status": "done"}}
    assert entity(api, "u1")["attributesData"]["_is_subscribed_sms"] is False
    api.post(api.p("/audience/stream/email-subscribe"), json={"audienceId": aid})
    assert entity(api, "u1")["attributesData"]["_is_subscribed_email"] is True
    assert api.post(api.p("/audience/stream/teleport"), json={"audienceId": aid}).status_code == 400
    assert api.post(api.p("/audience/stream/sms-subscribe"), json={"audienceId": "nope"}).status_code == 404
    assert api.post(api.p("/audience/stream/delete-contact"), json={"audienceId": aid}).status_code == 202
    assert api.state() == {
        **api.state(),
        "events": 0,
        "audience_contacts": 0,
        "contacts": {"dsapi": 0, "crm": 0},
    }
    assert api.get(api.p(f"/audience/{aid}")).status_code == 404


def test_merged_away_audience_id_resolves_to_the_merged_contact(api: Api) -> None:
    api.push_contacts([{"_user_id": "x", "_email": "x@example.com"}], ds="crm")
    api.push_contacts([{"_user_id": "y", "_email": "y@example.com"}])
    old_x, old_y = entity(api, "x")["id"], entity(api, "y")["id"]
    api.push_contacts([{"_user_id": "y", "_email": "x@example.com"}])
    merged = api.get(api.p(f"/audience/{old_y}")).json()["entity"]
    assert merged["id"] == old_x and merged["audienceIds"] == [old_x, old_y]


def test_search_by_user_id_index_matches_a_scan(api: Api) -> None:
    """A root that is one ``_user_id`` in/eq condition is answered from the index: the same
    contacts as the scan a group-wrapped root takes, merged contacts and number values too."""
    api.push_contacts([{"_user_id": str(i), "_email": f"p{i}@example.com"} for i in range(30)])
    # crm contacts merge (by email) into dsapi's contacts 0-9 under other user ids; 40-44 stand alone
    api.push_contacts([{"_user_id": f"crm-{i}", "_email": f"p{i}@example.com"} for i in range(10)], ds="crm")
    api.push_contacts([{"_user_id": str(i)} for i in range(40, 45)], ds="crm")
    wanted: list = ["3", "crm-4", 7, 12.0, "41", "nobody", "crm-99", 29]

    def search(root: dict) -> list[str]:
        r = api.post(api.p("/audience/search"), json={"limit": 50, "root": root})
        assert r.status_code == 200, r.text
        return [e["id"] for e in r.json()["entities"]]

    for op, values in (("in", wanted), ("eq", ["crm-4"]), ("eq", [12])):
        cond = {"type": "attribute_condition", "key": "_user_id", "operator": op, "values": values}
        scanned = search({"type": "group", "join": "and", "children": [cond]})
        assert search(cond) == scanned
    cond = {"type": "attribute_condition", "key": "_user_id", "operator": "in", "values": wanted}
    assert len(search(cond)) == len(search({"type": "group", "children": [cond]})) >= 5
