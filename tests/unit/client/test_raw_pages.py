"""The client's raw scroll pages (``scroll_*_raw_pages``): the same requests, retries and end
of the scroll as the decoded pages, with each page's body kept as bytes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import requests

from airflow_provider_instasent.client import InstasentClient, paging
from airflow_provider_instasent.client import endpoints as ep
from airflow_provider_instasent.client.errors import InstasentConfigError, NotFoundError
from airflow_provider_instasent.client.models import ApiResponse, RawScrollPage, ScrollPage
from airflow_provider_instasent.client.transport import decode_content


def make_client(**kw: Any) -> InstasentClient:
    kw.setdefault("pace", False)
    return InstasentClient(token="t" * 8, project="demo", base_url="http://127.0.0.1:9", **kw)


PAGES = {None: (["a", "b"], "c1"), "c1": (["c", "d"], "c2"), "c2": (["e"], None)}


def page_body(cursor: str | None) -> bytes:
    ents, nxt = PAGES[cursor]
    return orjson.dumps({"entities": [{"id": x} for x in ents], "metadata": {"cursor": nxt, "totalHits": 5}})


def test_raw_scroll_follows_the_cursor_like_the_decoded_scroll(monkeypatch):
    c = make_client()
    sent: list[tuple[Any, ...]] = []

    def fake_call(endpoint, *, path_params=None, query=None, json=None, decode=True, **kw):
        sent.append((endpoint, dict(json), query, path_params, decode))
        content = page_body(json.get("cursor"))
        return ApiResponse(200, content if not decode else orjson.loads(content), {})

    monkeypatch.setattr(c, "call", fake_call)
    it = c.scroll_audience_raw_pages({"type": "group"}, page_size=2)
    assert sent == []  # lazy
    pages = list(it)
    assert [p.cursor for p in pages] == ["c1", "c2", None]
    assert all(isinstance(p, RawScrollPage) and p.total_hits == 5 and p.has_entities for p in pages)
    assert [orjson.loads(p.content)["entities"][0]["id"] for p in pages] == ["a", "c", "e"]
    raw_sent = list(sent)
    sent.clear()
    decoded = list(c.scroll_audience_pages({"type": "group"}, page_size=2))
    assert [p.cursor for p in decoded] == ["c1", "c2", None]
    # the same requests, only the decoding differs
    assert [s[:4] for s in raw_sent] == [s[:4] for s in sent]
    assert [s[4] for s in raw_sent] == [False] * 3
    assert raw_sent[1][1] == {"root": {"type": "group"}, "limit": 2, "cursor": "c1"}


def test_raw_scroll_endpoints_and_parameters(monkeypatch):
    c = make_client()
    seen: list[tuple[Any, ...]] = []

    def fake_call(endpoint, *, path_params=None, query=None, json=None, decode=True, **kw):
        seen.append((endpoint, query, path_params))
        return ApiResponse(200, b'{"entities":[{"id":1}],"metadata":{"cursor":null,"totalHits":1}}', {})

    monkeypatch.setattr(c, "call", fake_call)
    assert len(list(c.scroll_segment_raw_pages("vip", parameter="p1"))) == 1
    assert len(list(c.scroll_events_raw_pages())) == 1
    assert seen == [(ep.SEGMENT_SCROLL, {"parameter": "p1"}, {"segment_uid": "vip"}), (ep.EVENT_SCROLL, None, {})]
    with pytest.raises(InstasentConfigError):
        next(c.scroll_audience_raw_pages(page_size=101))


def test_raw_scroll_stops_on_an_empty_page_even_with_a_cursor(monkeypatch):
    c = make_client()
    monkeypatch.setattr(c, "call", lambda *a, **k: ApiResponse(
        200, b'{"entities": [ ], "metadata": {"cursor": "again", "totalHits": 0}}', {}))
    pages = list(c.scroll_audience_raw_pages())
    assert len(pages) == 1 and not pages[0].has_entities and pages[0].cursor == "again"


BODIES = [
    b'{"entities":[{"id":1}],"metadata":{"cursor":"c","totalHits":3}}',
    b'{"metadata":{"cursor":"c","totalHits":"12"},"entities":[{"id":1}]}',
    b'{"entities":[],"metadata":{"cursor":"c"}}',
    b'{"entities":[\n  ],"metadata":{"cursor":"c"}}',
    b'{"entities":null,"metadata":null}',
    b'{"entities":{},"metadata":{}}',
    b'{"entities":{"a":1},"metadata":{"cursor":null}}',
    b'{"entities":0,"metadata":{"cursor":"c"}}',
    b'{"entities":"x","metadata":{"cursor":"c"}}',
    b'{"entities":[1],"entities":[],"metadata":{"cursor":"c"}}',
    b'{"other":1}',
    b'{}',
    b'',
    b'  {\n "entities" : [ {"id": "x", "nested": {"metadata": {"cursor": "no"}}} ] ,\n "metadata" : {"cursor": "yes"} }\n',
]


@pytest.mark.parametrize("with_msgspec", [True, False])
@pytest.mark.parametrize("content", BODIES)
def test_raw_page_fields_read_the_page_as_the_decoded_scroll_does(content, with_msgspec, monkeypatch):
    if not with_msgspec:
        monkeypatch.setattr(paging, "_ENVELOPE", None)
    entities, cursor, total = paging._page_fields(decode_content(content))
    assert paging._raw_page_fields(content) == (bool(entities), cursor, total)


@pytest.mark.parametrize("content", [b"[1, 2]", b"not json", b'{"metadata": [1]}'])
def test_raw_page_fields_fail_as_the_decoded_scroll_does(content):
    """Both say what came instead of a page (``paginate`` turns it into InstasentProtocolError)."""
    with pytest.raises(paging.NotAPage, match="not a JSON object"):
        paging._page_fields(decode_content(content))
    with pytest.raises(paging.NotAPage, match="not a JSON object"):
        paging._raw_page_fields(content)


def response(status: int, content: bytes) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = content
    r.headers["Content-Type"] = "application/json"
    return r


def test_call_without_decoding_keeps_bytes_and_still_maps_errors_and_retries(monkeypatch):
    c = make_client(max_retries=3, backoff_base=0.001, backoff_max=0.001)
    answers = [response(503, b'{"message":"busy"}'), response(200, b'{"entities":[{"id":1}],"metadata":{}}'),
               response(404, b'{"message":"no such segment"}')]
    sent: list[bytes] = []

    def fake_request(method, url, data=None, headers=None, timeout=None, stream=False):
        sent.append(data)
        return answers.pop(0)

    monkeypatch.setattr(c.session, "request", fake_request)
    pages = list(c.scroll_audience_raw_pages(page_size=7))
    assert [p.content for p in pages] == [b'{"entities":[{"id":1}],"metadata":{}}']
    assert len(sent) == 2 and sent[0] == sent[1]  # retried with the same body (the same cursor)
    with pytest.raises(NotFoundError, match="no such segment"):
        next(c.scroll_segment_raw_pages("missing"))
    assert c.stats.snapshot()["retries"] == 1


def test_models_are_distinct_and_backward_compatible():
    assert ScrollPage([], None, None) == ScrollPage(entities=[], cursor=None, total_hits=None)
    assert RawScrollPage(b"{}", None, None).has_entities
