"""The client's paging layer: one job, reading a listing or a scroll page by page.

``paginate`` is the one paging loop; a ``Paginator`` is its strategy (the model:
dlt's paginators): what to request first, and how to read a page into the page to yield and
the next request. ``OffsetPaginator`` follows ``_start``/``_limit`` index pages,
``CursorPaginator`` a scroll's ``metadata.cursor``, and ``RawCursorPaginator`` the
same scroll with each page's body kept as bytes (only its metadata is read, with msgspec when
installed). Each request is sent by ``call``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

import orjson

from . import endpoints as ep
from .endpoints import Endpoint
from .errors import InstasentConfigError, InstasentProtocolError
from .models import RawScrollPage, ScrollPage
from .transport import Transport, decode_content

try:  # installed with Airflow; without it, a raw page's metadata is read with orjson
    import msgspec
except ImportError:  # pragma: no cover
    msgspec = None  # type: ignore[assignment]

T = TypeVar("T")
PageRequest = tuple[Mapping[str, Any] | None, Any]  # one page request: its query and JSON body


def paginate(transport: Transport, endpoint: Endpoint, paginator: Paginator[T], path: Mapping[str, Any]
             ) -> Iterator[T]:
    """The one paging loop: ``paginator`` says what to request and reads each page.

    Lazy: nothing is requested before the first page is asked for, and one page is in
    memory at a time. A page request that fails transiently is retried by
    ``call`` with the same query and body (the same cursor), so no
    page is lost or read twice.
    """
    request: PageRequest | None = paginator.first()
    while request is not None:
        query, body = request
        response = transport.call(endpoint, path_params=path, query=query, json=body, decode=paginator.decode)
        try:
            page, request = paginator.next(response.data)
        except NotAPage as exc:  # HTML from a proxy, a JSON list...: name the endpoint and what came
            raise InstasentProtocolError(endpoint.method, endpoint.path, response.status, str(exc),
                                         consequence="nothing of it is read") from None
        yield page


class NotAPage(ValueError):
    """A 2xx body that is not a page of the endpoint's shape (the message says what came)."""


def _as_page(data: Any) -> Mapping[str, Any]:
    """A decoded page body as a mapping; anything else is ``NotAPage`` (an empty body is an
    empty page: the end of a listing)."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        what = "text" if isinstance(data, str) else f"a JSON {type(data).__name__}"
        raise NotAPage(f"its body is {what}, not a JSON object with {ep.ENTITIES} and {ep.METADATA}: "
                       f"{str(data)[:120]!r}")
    meta = data.get(ep.METADATA)
    if meta is not None and not isinstance(meta, Mapping):
        raise NotAPage(f"its {ep.METADATA} is not a JSON object: {str(meta)[:120]!r}")
    return data


class Paginator(Generic[T]):
    """A paging strategy for ``paginate`` (the model: dlt's paginators).

    ``first`` is the first page's request (and checks the arguments, when the first page
    is asked for); ``next`` reads a page's response into the page to yield and the next
    request, or None at the end. ``decode``: whether the loop gets the decoded body or its bytes.
    """

    decode = True

    def first(self) -> PageRequest:
        raise NotImplementedError

    def next(self, data: Any) -> tuple[T, PageRequest | None]:
        raise NotImplementedError


class OffsetPaginator(Paginator[list[dict[str, Any]]]):
    """``_start``/``_limit`` pages of an index endpoint, to a short page or ``metadata.count``."""

    def __init__(self, filters: Mapping[str, Any] | None, page_size: int) -> None:
        self.filters = dict(filters or {})
        self.page_size = page_size
        self.start = 0

    def _request(self) -> PageRequest:
        return {**self.filters, ep.Q_START: self.start, ep.Q_LIMIT: self.page_size}, None

    def first(self) -> PageRequest:
        return self._request()

    def next(self, data: Any) -> tuple[list[dict[str, Any]], PageRequest | None]:
        data = _as_page(data)
        entities = data.get(ep.ENTITIES) or []
        count = (data.get(ep.METADATA) or {}).get(ep.COUNT)
        self.start += len(entities)
        done = not entities or len(entities) < self.page_size or (isinstance(count, int) and self.start >= count)
        return entities, None if done else self._request()


class _CursorRequests:
    """The requests of a cursor scroll: ``body`` plus ``limit`` and the last page's ``cursor``."""

    def __init__(self, body: Mapping[str, Any], page_size: int, query: Mapping[str, Any] | None) -> None:
        self.body = body
        self.page_size = page_size
        self.query = query

    def _request(self, cursor: str | None) -> PageRequest:
        return self.query, _scroll_payload(self.body, self.page_size, cursor)

    def first(self) -> PageRequest:
        _check_page_size(self.page_size)
        return self._request(None)


class CursorPaginator(_CursorRequests, Paginator[ScrollPage]):
    """Decoded scroll pages, following ``metadata.cursor`` to a page without cursor or entities."""

    def next(self, data: Any) -> tuple[ScrollPage, PageRequest | None]:
        entities, cursor, total = _page_fields(data)
        return ScrollPage(entities, cursor, total), self._request(cursor) if cursor and entities else None


class RawCursorPaginator(_CursorRequests, Paginator[RawScrollPage]):
    """``CursorPaginator`` with each page's body kept as bytes: only its metadata is read."""

    decode = False

    def next(self, data: Any) -> tuple[RawScrollPage, PageRequest | None]:
        has_entities, cursor, total = _raw_page_fields(data)
        page = RawScrollPage(data, cursor, total, has_entities)
        return page, self._request(cursor) if cursor and has_entities else None


def _check_page_size(page_size: int) -> None:
    if not 1 <= page_size <= ep.MAX_SCROLL_LIMIT:
        raise InstasentConfigError(f"page_size must be between 1 and {ep.MAX_SCROLL_LIMIT}")


def _scroll_payload(body: Mapping[str, Any], page_size: int, cursor: str | None) -> dict[str, Any]:
    payload = {k: v for k, v in body.items() if v is not None}
    payload[ep.LIMIT] = page_size
    if cursor:
        payload[ep.CURSOR] = cursor
    return payload


def _page_fields(data: Any) -> tuple[Any, str | None, int | None]:
    """A decoded scroll page's entities, cursor and total hits."""
    data = _as_page(data)
    entities = data.get(ep.ENTITIES) or []
    meta = data.get(ep.METADATA) or {}
    total = meta.get(ep.TOTAL_HITS)
    return entities, meta.get(ep.CURSOR), int(total) if total is not None else None


if msgspec is not None:

    class _Envelope(msgspec.Struct):
        """A scroll page with its entities left undecoded (``msgspec.Raw``: skipped, not parsed)."""

        entities: msgspec.Raw = msgspec.field(default=msgspec.Raw(), name=ep.ENTITIES)
        metadata: Any = msgspec.field(default=None, name=ep.METADATA)

    _ENVELOPE: Any = msgspec.json.Decoder(_Envelope)
    _ENVELOPE_ERRORS: tuple[type[Exception], ...] = (msgspec.DecodeError, msgspec.ValidationError)
else:  # pragma: no cover
    _ENVELOPE = None
    _ENVELOPE_ERRORS = ()


def _raw_page_fields(content: bytes) -> tuple[bool, str | None, int | None]:
    """Whether a raw scroll page has entities, its cursor and total hits, as ``_page_fields``
    reads them from the decoded page; the entities are not decoded (with msgspec)."""
    if _ENVELOPE is not None:
        try:
            page = _ENVELOPE.decode(content)
        except _ENVELOPE_ERRORS:
            pass  # not a JSON object, or no body: decoded in full below
        else:
            _, cursor, total = _page_fields({ep.METADATA: page.metadata})
            return _json_truthy(bytes(page.entities)), cursor, total
    entities, cursor, total = _page_fields(decode_content(content))
    return bool(entities), cursor, total


def _json_truthy(text: bytes) -> bool:
    """``bool(orjson.loads(text))`` without decoding a large array or object."""
    text = text.strip()
    if not text:
        return False  # the field is absent
    if text[:1] in (b"[", b"{"):
        return bool(text[1:-1].strip())
    return bool(orjson.loads(text))
