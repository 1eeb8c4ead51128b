"""Cursor scrolls (audience, segment, events), search and query filters."""

from __future__ import annotations

import threading

import pytest

from .conftest import Api, order


def seed(api: Api, n: int, prefix: str = "u", **attrs) -> None:
    for start in range(0, n, 100):
        batch = [{"_user_id": f"{prefix}{i:04d}", **attrs} for i in range(start, min(n, start + 100))]
        assert api.push_contacts(batch).status_code == 202


def test_scroll_pages_total_hits_and_null_cursor(api: Api) -> None:
    seed(api, 250)
    entities, metas = api.scroll_all(body={"limit": 100})
    assert [len(m and [1]) for m in metas] == [1, 1, 1]
    assert [m["totalHits"] for m in metas] == [250, 250, 250]
    assert metas[-1]["cursor"] is None and all(m["cursor"] for m in metas[:-1])
    assert len(entities) == 250 and len({e["id"] for e in entities}) == 250
    ids = [e["id"] for e in entities]
    assert ids == sorted(ids)  # default order: audience id ascending


def test_scroll_limit_clamped_to_100(api: Api) -> None:
    seed(api, 150)
    body = api.post(api.p("/audience/scroll"), json={"limit": 500}).json()
    assert len(body["entities"]) == 100 and body["metadata"]["limit"] == 100
    assert api.post(api.p("/audience/scroll"), json={"limit": 0}).status_code == 400


def test_empty_scroll(api: Api) -> None:
    body = api.post(api.p("/audience/scroll"), json={}).json()
    assert body == {"entities": [], "metadata": {"cursor": None, "limit": 100, "totalHits": 0}}


def test_unknown_cursor_is_400(api: Api) -> None:
    for cursor in ("garbage!", "YWJjOjEw"):  # the second decodes to "abc:10": a snapshot that never existed
        r = api.post(api.p("/audience/scroll"), json={"cursor": cursor})
        assert r.status_code == 400 and "ursor" in r.json()["message"]


def test_scroll_stable_under_concurrent_writes(api: Api) -> None:
    seed(api, 300)
    first = api.post(api.p("/audience/scroll"), json={"limit": 50}).json()
    stop = threading.Event()
    rounds = [0]
    progressed = threading.Condition()
    writer = api.as_token("demo-admin-token")

    def write() -> None:
        n = 0
        while not stop.is_set():
            writer.push_contacts([{"_user_id": f"new{n}-{i}"} for i in range(20)])  # new contacts
            writer.push_contacts(
                [{"_user_id": f"u{(n * 7 + i) % 300:04d}", "plan": f"p{n}"} for i in range(20)]
            )
            n += 1
            with progressed:
                rounds[0] = n
                progressed.notify_all()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        entities = list(first["entities"])
        cursor = first["metadata"]["cursor"]
        while cursor:
            with progressed:  # interleave: at least one more write round between two pages
                seen = rounds[0]
                progressed.wait_for(lambda seen=seen: rounds[0] > seen, timeout=10)
            page = api.post(api.p("/audience/scroll"), json={"cursor": cursor, "limit": 50}).json()
            assert page["metadata"]["totalHits"] == 300
            entities.extend(page["entities"])
            cursor = page["metadata"]["cursor"]
    finally:
        stop.set()
        thread.join()
    ids = [e["attributesData"]["_user_id"] for e in entities]
    assert len(ids) == 300 and set(ids) == {f"u{i:04d}" for i in range(300)}
    assert rounds[0] >= 5
    assert api.state()["audience_contacts"] >= 300 + 5 * 20


def test_deleted_contacts_skipped_never_duplicated(api: Api) -> None:
    seed(api, 120)
    first = api.post(api.p("/audience/scroll"), json={"limit": 60}).json()
    for i in range(60, 70):
        api.delete(api.ds("dsapi", f"/stream/contacts/u{i:04d}"))
    rest = api.post(
        api.p("/audience/scroll"), json={"cursor": first["metadata"]["cursor"], "limit": 60}
    ).json()
    ids = [e["id"] for e in first["entities"] + rest["entities"]]
    assert len(ids) == len(set(ids)) == 110
    assert rest["metadata"]["cursor"] is None


def test_static_dynamic_and_parameterised_segment_scroll(api: Api) -> None:
    api.push_contacts(
        [
            {"_user_id": "vip-1", "plan": "pro"},
            {"_user_id": "vip-2", "plan": "free"},
            {"_user_id": "u3", "plan": "pro"},
            {"_user_id": "u4", "plan": "basic"},
            {"_user_id": "u5"},
        ]
    )

    def users(segment: str, query: str = "") -> list[str]:
        entities, _ = api.scroll_all(f"/audience/segment/{segment}/scroll", query=query)
        return sorted(e["attributesData"]["_user_id"] for e in entities)

    assert users("vip_static") == ["vip-1", "vip-2"]
    assert users("pro_plan") == ["u3", "vip-1"]
    assert users("by_plan", "?parameter=free|basic") == ["u4", "vip-2"]
    assert api.post(api.p("/audience/segment/by_plan/scroll"), json={}).status_code == 400
    assert api.post(api.p("/audience/segment/nope/scroll"), json={}).status_code == 404
    root = {"type": "attribute_condition", "key": "plan", "operator": "eq", "values": ["pro"]}
    body = api.post(api.p("/audience/segment/vip_static/scroll"), json={"root": root}).json()
    assert [e["attributesData"]["_user_id"] for e in body["entities"]] == ["vip-1"]


CONTACTS = [
    {
        "_user_id": "a",
        "plan": "pro",
        "loyalty_points": 5,
        "birthday": "1990-01-10",
        "_email": "a@shop.com",
        "_client_tags": ["vip", "newsletter"],
    },
    {"_user_id": "b", "plan": "free", "loyalty_points": 50, "birthday": "2000-06-01", "_email": "b@mail.com"},
    {"_user_id": "c", "plan": "basic", "birthday": "1985-03-03"},
]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"key": "plan", "operator": "eq", "values": ["pro"]}, ["a"]),
        ({"key": "plan", "operator": "neq", "values": ["pro"]}, ["b", "c"]),
        ({"key": "plan", "operator": "in", "values": ["pro", "free"]}, ["a", "b"]),
        ({"key": "_email", "operator": "contains", "values": ["SHOP"]}, ["a"]),
        ({"key": "loyalty_points", "operator": "exists", "values": []}, ["a", "b"]),
        ({"key": "loyalty_points", "operator": "not-exists", "values": []}, ["c"]),
        ({"key": "_email", "operator": "matches-string", "values": ["&&", "b", "mail"]}, ["b"]),
        ({"key": "loyalty_points", "operator": "range-number", "values": {"lowerNumber": 10}}, ["b"]),
        (
            {
                "key": "birthday",
                "operator": "range-date",
                "values": {"lowerDate": "1985-01-01", "upperDate": "1990-01-10"},
            },
            ["a", "c"],
        ),
        ({"key": "_client_tags", "operator": "eq", "values": ["vip"]}, ["a"]),
    ],
)
def test_attribute_condition_operators(api: Api, condition: dict, expected: list[str]) -> None:
    api.push_contacts(CONTACTS)
    root = {"type": "group", "join": "and", "children": [{"type": "attribute_condition", **condition}]}
    entities, metas = api.scroll_all(body={"root": root})
    assert sorted(e["attributesData"]["_user_id"] for e in entities) == expected
    assert metas[0]["totalHits"] == len(expected)


def test_groups_or_and_segment_condition(api: Api) -> None:
    api.push_contacts([*CONTACTS, {"_user_id": "vip-3", "plan": "free"}])
    root = {
        "type": "group",
        "join": "or",
        "children": [
            {"type": "segment_condition", "key": "vip_static", "operator": "in"},
            {
                "type": "group",
                "join": "and",
                "children": [
                    {"type": "attribute_condition", "key": "plan", "operator": "eq", "values": ["pro"]},
                    {
                        "type": "attribute_condition",
                        "key": "loyalty_points",
                        "operator": "range-number",
                        "values": {"lowerNumber": 1, "upperNumber": 9},
                    },
                ],
            },
        ],
    }
    entities, _ = api.scroll_all(body={"root": root})
    assert sorted(e["attributesData"]["_user_id"] for e in entities) == ["a", "vip-3"]


@pytest.mark.parametrize(
    ("root", "word"),
    [
        (
            {"type": "attribute_condition", "key": "plan", "operator": "sounds-like", "values": ["x"]},
            "sounds-like",
        ),
        ({"type": "telepathy_condition", "key": "plan"}, "telepathy_condition"),
        ({"type": "group", "join": "xor", "children": []}, "xor"),
    ],
)
def test_unknown_operator_or_type_is_400(api: Api, root: dict, word: str) -> None:
    for path in ("/audience/scroll", "/audience/search"):
        r = api.post(api.p(path), json={"root": root})
        assert r.status_code == 400 and word in r.json()["message"]


def test_event_scroll_and_search(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1"}])
    api.push_events([order(f"o{i}", _event_date=f"2024-01-{i + 1:02d}T10:00:00Z") for i in range(30)])
    for start in (0, 60):
        r = api.push_events(
            [
                {
                    "_user_id": "u1",
                    "_event_id": f"p{i}",
                    "_event_type": "page_view",
                    "_event_parameters": {"url": f"https://x/{i}"},
                }
                for i in range(start, start + 60)
            ]
        )
        assert r.status_code == 202
    entities, metas = api.scroll_all("/event/scroll", body={"limit": 100})
    assert len(entities) == 150 and metas[0]["totalHits"] == 150 and len(metas) == 2
    assert len({e["id"] for e in entities}) == 150
    root = {
        "type": "group",
        "join": "and",
        "children": [
            {
                "type": "event_condition",
                "key": "event-type",
                "operator": "eq",
                "values": ["ecommerce_order_create"],
            },
            {
                "type": "event_condition",
                "key": "created-at",
                "operator": "range-date",
                "values": {"lowerDate": "2024-01-05", "upperDate": "2024-01-10"},
            },
        ],
    }
    orders, _ = api.scroll_all("/event/scroll", body={"root": root})
    assert sorted(e["_event_id"] for e in orders) == sorted(f"o{i}" for i in range(4, 10))
    found = api.post(api.p("/event/search"), json={"root": root, "limit": 3}).json()
    assert found["metadata"] == {"totalHits": 6, "limit": 3, "offset": 0}
    assert [e["_event_id"] for e in found["entities"]] == ["o9", "o8", "o7"]  # newest first by default
    big = api.post(api.p("/event/search"), json={"limit": 1000}).json()
    assert len(big["entities"]) == 50 and big["metadata"]["limit"] == 50
    in_types = {"type": "event_condition", "key": "event-type", "operator": "in", "values": ["page_view"]}
    assert api.post(api.p("/event/search"), json={"root": in_types}).json()["metadata"]["totalHits"] == 120


def test_audience_filter_on_events(api: Api) -> None:
    api.push_contacts([{"_user_id": "buyer"}, {"_user_id": "browser"}])
    api.push_events([order("o1", user_id="buyer")])
    root = {
        "type": "event_condition",
        "key": "event-type",
        "operator": "eq",
        "values": ["ecommerce_order_create"],
    }
    entities, _ = api.scroll_all(body={"root": root})
    assert [e["attributesData"]["_user_id"] for e in entities] == ["buyer"]


def test_snapshots_expire_and_are_capped() -> None:
    from airflow_provider_instasent.emulator.store import Snapshots

    snaps = Snapshots(ttl=60, max_count=3, max_refs=10)
    first = snaps.create("o", [1, 2, 3, 4])
    second = snaps.create("o", [5, 6, 7, 8])
    assert snaps.get(first, "o") == [1, 2, 3, 4] and snaps.get(first, "other-owner") is None
    snaps.create("o", [9, 10, 11])  # 11 references > 10: the least recently used (second) goes
    assert snaps.get(second, "o") is None and snaps.get(first, "o") is not None
    expired = Snapshots(ttl=-1)
    sid = expired.create("o", [1])
    assert expired.get(sid, "o") is None
