"""Lazy iterators: cursor scrolls and _start/_limit listings hold one page at a time."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from airflow_provider_instasent.client import InstasentClient, InstasentConfigError
from airflow_provider_instasent.client import endpoints as ep
from airflow_provider_instasent.client.models import ApiResponse


def make_client() -> InstasentClient:
    return InstasentClient(token="t" * 8, project="demo", base_url="http://127.0.0.1:9")


def answer(c: InstasentClient, monkeypatch, respond) -> None:
    """Every request of ``c`` answered by ``respond(endpoint, query, body, path)`` (the decoded data)."""

    def fake_call(endpoint, *, path_params=None, query=None, json=None, decode=True, **kw):
        assert decode
        return ApiResponse(200, respond(endpoint, query, json, dict(path_params or {})), {})

    monkeypatch.setattr(c, "call", fake_call)


def test_scroll_follows_cursor_to_the_end_lazily(monkeypatch):
    c = make_client()
    pages = {None: (["a", "b"], "c1"), "c1": (["c", "d"], "c2"), "c2": (["e"], None)}
    sent: list[dict[str, Any]] = []

    def respond(endpoint, query, payload, path):
        assert endpoint is ep.AUDIENCE_SCROLL
        sent.append(dict(payload))
        ents, cursor = pages[payload.get("cursor")]
        return {"entities": [{"id": x} for x in ents], "metadata": {"cursor": cursor, "totalHits": 5}}

    answer(c, monkeypatch, respond)
    it = c.scroll_audience(page_size=2)
    assert sent == []  # lazy: nothing requested yet
    assert next(it) == {"id": "a"}
    assert len(sent) == 1
    assert [x["id"] for x in it] == ["b", "c", "d", "e"]
    assert [s.get("cursor") for s in sent] == [None, "c1", "c2"]
    assert all(s["limit"] == 2 for s in sent)


def test_scroll_stops_on_empty_page_even_with_cursor(monkeypatch):
    c = make_client()
    answer(c, monkeypatch, lambda *a: {"entities": [], "metadata": {"cursor": "again"}})
    assert list(c.scroll_events()) == []


def test_scroll_page_size_bounds():
    c = make_client()
    with pytest.raises(InstasentConfigError):
        next(c.scroll_audience_pages(page_size=101))
    with pytest.raises(InstasentConfigError):
        next(c.scroll_audience_pages(page_size=0))


def test_segment_scroll_passes_parameter(monkeypatch):
    c = make_client()
    seen = {}

    def respond(endpoint, query, payload, path):
        seen.update(endpoint=endpoint, query=query, path=path)
        return {"entities": [{"id": 1}], "metadata": {"cursor": None, "totalHits": 1}}

    answer(c, monkeypatch, respond)
    pages = list(c.scroll_segment_pages("by_plan", parameter="pro|free"))
    assert pages[0].total_hits == 1 and pages[0].cursor is None
    assert seen == {"endpoint": ep.SEGMENT_SCROLL, "query": {"parameter": "pro|free"},
                    "path": {"segment_uid": "by_plan"}}


def test_index_follows_start_limit(monkeypatch):
    c = make_client()
    data = [{"id": i} for i in range(5)]
    calls = []

    def respond(endpoint, query, payload, path):
        assert endpoint is ep.CAMPAIGNS and payload is None
        calls.append(dict(query))
        s, n = query["_start"], query["_limit"]
        return {"entities": data[s : s + n], "metadata": {"count": len(data), "start": s, "limit": n}}

    answer(c, monkeypatch, respond)
    assert [x["id"] for x in c.list_campaigns({"status_in": "draft"}, page_size=2)] == [0, 1, 2, 3, 4]
    assert [q["_start"] for q in calls] == [0, 2, 4]
    assert all(q["status_in"] == "draft" for q in calls)


def test_path_building_quotes_and_requires_project():
    c = make_client()
    assert c._path(ep.AUDIENCE_BY_PHONE, {"phone": "+34 600"}) == "/project/demo/audience/search/phone/%2B34%20600"
    assert c._path(ep.PUSH_EVENTS, {}) == "/project/demo/datasource/dsapi/stream/events"
    bare = InstasentClient(token="t" * 8, base_url="http://127.0.0.1:9")
    with pytest.raises(InstasentConfigError, match="needs a project"):
        bare._path(ep.PROJECT, {})


def test_client_rejects_bad_configuration():
    with pytest.raises(InstasentConfigError):
        InstasentClient(token="", project="p")
    with pytest.raises(InstasentConfigError):
        InstasentClient(token="x", base_url="api.instasent.com")
    assert make_client().base_url == "http://127.0.0.1:9"
    assert InstasentClient(token="x", base_url="http://h/v1/").base_url == "http://h"


def test_repr_and_pickle_never_leak_the_token():
    import pickle

    c = InstasentClient(token="super-secret-token", project="p", base_url="http://h")
    assert "super-secret-token" not in repr(c)
    with pytest.raises(TypeError):
        pickle.dumps(c)


def test_environment_proxies_and_ca_bundle_are_read_once(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corp.pem")
    c = InstasentClient(token="t" * 8, base_url="https://api.example.com")
    assert c.session.trust_env is False
    assert c.session.proxies.get("https") == "http://proxy.internal:3128"
    assert c.session.verify == "/etc/ssl/corp.pem"
    explicit = InstasentClient(token="t" * 8, base_url="https://api.example.com", verify="/my/ca.pem")
    assert explicit.session.verify == "/my/ca.pem"
    off = InstasentClient(token="t" * 8, base_url="https://api.example.com", verify=False)
    assert off.session.verify is False


def test_one_scroll_entry_point_for_every_kind_and_mode(monkeypatch):
    c = make_client()
    seen: list[tuple[Any, ...]] = []
    body = b'{"entities":[{"id":1},{"id":2}],"metadata":{"cursor":null,"totalHits":2}}'

    def fake_call(endpoint, *, path_params=None, query=None, json=None, decode=True, **kw):
        seen.append((endpoint, query, dict(path_params or {}), dict(json), decode))
        return ApiResponse(200, orjson.loads(body) if decode else body, {})

    monkeypatch.setattr(c, "call", fake_call)
    assert [e["id"] for e in c.scroll("events", root={"type": "group"})] == [1, 2]
    pages = list(c.scroll("segment", mode="pages", segment="vip", parameter="p", page_size=5))
    assert [p.total_hits for p in pages] == [2]
    raw = list(c.scroll("audience", mode="raw"))
    assert raw[0].content == body and raw[0].has_entities
    assert seen == [
        (ep.EVENT_SCROLL, None, {}, {"root": {"type": "group"}, "limit": 100}, True),
        (ep.SEGMENT_SCROLL, {"parameter": "p"}, {"segment_uid": "vip"}, {"limit": 5}, True),
        (ep.AUDIENCE_SCROLL, None, {}, {"limit": 100}, False),
    ]
    # the documented per-kind methods are the same calls
    seen.clear()
    list(c.scroll_events({"type": "group"}))
    list(c.scroll_segment_pages("vip", parameter="p", page_size=5))
    list(c.scroll_audience_raw_pages())
    assert [s[:4] for s in seen] == [
        (ep.EVENT_SCROLL, None, {}, {"root": {"type": "group"}, "limit": 100}),
        (ep.SEGMENT_SCROLL, {"parameter": "p"}, {"segment_uid": "vip"}, {"limit": 5}),
        (ep.AUDIENCE_SCROLL, None, {}, {"limit": 100}),
    ]


def test_scroll_rejects_bad_arguments():
    c = make_client()
    with pytest.raises(InstasentConfigError, match="kind must be one of"):
        c.scroll("contacts")  # type: ignore[call-overload]
    with pytest.raises(InstasentConfigError, match="needs segment"):
        c.scroll("segment")
    with pytest.raises(InstasentConfigError, match="only valid with kind='segment'"):
        c.scroll("audience", segment="vip")
    with pytest.raises(InstasentConfigError, match="mode must be"):
        c.scroll("audience", mode="rows")  # type: ignore[call-overload]
    with pytest.raises(InstasentConfigError):  # page size: when the first page is asked for
        next(c.scroll("events", mode="raw", page_size=0))
