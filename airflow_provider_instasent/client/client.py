"""``InstasentClient``: a plain-Python client for the whole Instasent Product and Ingest API.

It knows nothing of Airflow. One ``requests.Session`` with a connection pool is shared by
every call (and by every thread: the client is thread-safe). Every request has a timeout,
is paced by :class:`~.ratelimit.RateLimiter` and retried by :class:`~.retry.RetryPolicy`.
Scrolls and listings are lazy iterators that hold one page at a time.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, Literal, TypeVar, overload
from urllib.parse import quote, urlencode

import orjson
import requests
import tenacity
from requests.adapters import HTTPAdapter

from . import endpoints as ep
from .endpoints import Endpoint, ScrollKind
from .errors import (
    InstasentConfigError,
    InstasentConnectionError,
    InstasentHTTPError,
    error_for_status,
    redact,
)
from .models import ApiResponse, PushResult, RawScrollPage, ScrollPage
from .ratelimit import RateLimiter
from .retry import Outcome, RetryPolicy

try:  # installed with Airflow; without it, a raw page's metadata is read with orjson
    import msgspec
except ImportError:  # pragma: no cover
    msgspec = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

Timeout = float | tuple[float, float]
#: What :meth:`InstasentClient.scroll` yields: entities, decoded pages, or raw pages.
ScrollMode = Literal["entities", "pages", "raw"]
T = TypeVar("T")
_FLAG = object()  # a bare query flag such as ``?_dryRun``


def _encode_query(params: Mapping[str, Any] | None) -> str:
    if not params:
        return ""
    parts: list[str] = []
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        if value is _FLAG:
            parts.append(quote(key, safe="_"))
        elif isinstance(value, bool):
            pairs.append((key, "true" if value else "false"))
        elif isinstance(value, (list, tuple)):
            pairs.append((key, ",".join(str(v) for v in value)))
        else:
            pairs.append((key, str(value)))
    if pairs:
        parts.append(urlencode(pairs))
    return "?" + "&".join(parts) if parts else ""


_Request = tuple[Mapping[str, Any] | None, Any]  # one page request: its query and JSON body


class _Paginator(Generic[T]):
    """A paging strategy for :meth:`InstasentClient._paginate` (the model: dlt's paginators).

    :meth:`first` is the first page's request (and checks the arguments, when the first page
    is asked for); :meth:`next` reads a page's response into the page to yield and the next
    request, or None at the end. ``decode``: whether the loop gets the decoded body or its bytes.
    """

    decode = True

    def first(self) -> _Request:
        raise NotImplementedError

    def next(self, data: Any) -> tuple[T, _Request | None]:
        raise NotImplementedError


class _OffsetPaginator(_Paginator[list[dict[str, Any]]]):
    """``_start``/``_limit`` pages of an index endpoint, to a short page or ``metadata.count``."""

    def __init__(self, filters: Mapping[str, Any] | None, page_size: int) -> None:
        self.filters = dict(filters or {})
        self.page_size = page_size
        self.start = 0

    def _request(self) -> _Request:
        return {**self.filters, ep.Q_START: self.start, ep.Q_LIMIT: self.page_size}, None

    def first(self) -> _Request:
        return self._request()

    def next(self, data: Any) -> tuple[list[dict[str, Any]], _Request | None]:
        data = data or {}
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

    def _request(self, cursor: str | None) -> _Request:
        return self.query, _scroll_payload(self.body, self.page_size, cursor)

    def first(self) -> _Request:
        _check_page_size(self.page_size)
        return self._request(None)


class _CursorPaginator(_CursorRequests, _Paginator[ScrollPage]):
    """Decoded scroll pages, following ``metadata.cursor`` to a page without cursor or entities."""

    def next(self, data: Any) -> tuple[ScrollPage, _Request | None]:
        entities, cursor, total = _page_fields(data)
        return ScrollPage(entities, cursor, total), self._request(cursor) if cursor and entities else None


class _RawCursorPaginator(_CursorRequests, _Paginator[RawScrollPage]):
    """:class:`_CursorPaginator` with each page's body kept as bytes: only its metadata is read."""

    decode = False

    def next(self, data: Any) -> tuple[RawScrollPage, _Request | None]:
        has_entities, cursor, total = _raw_page_fields(data)
        page = RawScrollPage(data, cursor, total, has_entities)
        return page, self._request(cursor) if cursor and has_entities else None


class ClientStats:
    """Thread-safe request counters (for logs, reports and benchmarks)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0
        self.statuses: Counter[int] = Counter()
        self.no_response = 0
        self.bytes_sent = 0

    def record(self, status: int | None, sent: int, retry: bool) -> None:
        with self._lock:
            self.requests += 1
            self.bytes_sent += sent
            if retry:
                self.retries += 1
            if status is None:
                self.no_response += 1
            else:
                self.statuses[status] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "statuses": dict(self.statuses),
                "no_response": self.no_response,
                "bytes_sent": self.bytes_sent,
            }


class InstasentClient:
    """Client for the Instasent Product API and its built-in Ingest API.

    Args:
        token: a project/organization token or a datasource token. Never logged.
        project: project UID used by every project-scoped call (override per call).
        datasource: datasource UID for ingest calls; ``dsapi`` is the API's alias for the
            project's first API datasource.
        base_url: API root without ``/v1``.
        timeout: seconds, or ``(connect, read)``; applies to every request.
        max_retries: retries after the first attempt on 429, 5xx and lost connections.
        max_retry_time: give up retrying after this many seconds in total.
        backoff_base: first exponential backoff, seconds (doubles each retry).
        backoff_max: ceiling of one backoff, seconds.
        verify: TLS verification: True (default), False, or a CA-bundle path.
        pool_size: connections kept alive; set it to at least your concurrency.
        pace: pace requests by the ``X-RateLimit-*`` headers (see :class:`RateLimiter`).
        session: a ``requests.Session`` to use instead of a new one.

    Example::

        with InstasentClient(token="...", project="my-project") as client:
            for contact in client.scroll_audience():
                print(contact["id"])
    """

    def __init__(
        self,
        *,
        token: str,
        project: str | None = None,
        datasource: str = ep.DEFAULT_DATASOURCE,
        base_url: str = ep.DEFAULT_BASE_URL,
        timeout: Timeout = (10.0, 60.0),
        max_retries: int = 5,
        max_retry_time: float = 600.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        verify: bool | str = True,
        pool_size: int = 16,
        pace: bool = True,
        user_agent: str | None = None,
        session: requests.Session | None = None,
        retry_policy: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        if not token or not isinstance(token, str):
            raise InstasentConfigError("token is required (a non-empty string)")
        if max_retries < 0:
            raise InstasentConfigError("max_retries must be >= 0")
        self._token = token
        self.project = project
        self.datasource = datasource or ep.DEFAULT_DATASOURCE
        self.base_url = base_url.rstrip("/")
        if self.base_url.endswith(ep.API_PREFIX):
            self.base_url = self.base_url[: -len(ep.API_PREFIX)]
        if not self.base_url.startswith(("http://", "https://")):
            raise InstasentConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.timeout: Timeout = timeout
        self.retry = retry_policy or RetryPolicy(
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            max_total=max_retry_time,
        )
        self.rate_limiter = rate_limiter if rate_limiter is not None else RateLimiter()
        self.pace = pace
        self.stats = ClientStats()
        self._own_session = session is None
        self.session = session or requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(1, pool_size), max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        if self._own_session:
            # requests re-reads proxy and CA-bundle variables from the environment on every
            # request (a measurable share of a scroll's CPU: docs/performance.md). Read them once, here, and
            # switch that off.
            env_ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            self.session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
            self.session.trust_env = False
            if verify is True and env_ca:
                verify = env_ca
        self.session.verify = verify
        from .. import __version__

        self.session.headers.update(
            {
                ep.H_AUTHORIZATION: f"Bearer {token}",
                ep.H_ACCEPT: ep.JSON_MEDIA_TYPE,
                ep.H_USER_AGENT: user_agent or f"airflow-provider-instasent/{__version__}",
            }
        )

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def __enter__(self) -> InstasentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:  # the token is deliberately absent
        return (
            f"InstasentClient(base_url={self.base_url!r}, project={self.project!r}, "
            f"datasource={self.datasource!r})"
        )

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("InstasentClient is not picklable (it holds a token and a session)")

    # -- plumbing -------------------------------------------------------------------------
    def _path(self, endpoint: Endpoint, params: Mapping[str, Any]) -> str:
        values: dict[str, str] = {}
        for name, value in params.items():
            values[name] = quote(str(value), safe="")
        if "{project}" in endpoint.path and "project" not in values:
            if not self.project:
                raise InstasentConfigError(
                    f"{endpoint.name} needs a project: pass project=... to InstasentClient or the call"
                )
            values["project"] = quote(self.project, safe="")
        if "{datasource}" in endpoint.path and "datasource" not in values:
            values["datasource"] = quote(self.datasource, safe="")
        try:
            return endpoint.path.format(**values)
        except KeyError as missing:
            raise InstasentConfigError(f"{endpoint.name} needs {missing}") from None

    def call(
        self,
        endpoint: Endpoint,
        *,
        path_params: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
        json: Any = None,
        body: bytes | None = None,
        accept_statuses: Iterable[int] = (),
        decode: bool = True,
    ) -> ApiResponse:
        """Send one request to ``endpoint`` with pacing, retries and error mapping.

        ``path_params`` fill the path template (``project``/``datasource`` default to the
        client's). ``json`` is encoded with orjson; ``body`` sends pre-encoded JSON bytes.
        Statuses in ``accept_statuses`` are returned instead of raised. With
        ``decode=False`` a returned response's ``data`` is the body's bytes, not decoded
        (error responses are decoded as usual, for the exception).
        """
        path = ep.API_PREFIX + self._path(endpoint, {k: v for k, v in (path_params or {}).items() if v})
        if path.endswith("/") and len(path) > len(ep.API_PREFIX) + 1:
            path = path.rstrip("/")
        url = self.base_url + path + _encode_query(query)
        payload = body if body is not None else (orjson.dumps(json) if json is not None else None)
        headers = {ep.H_CONTENT_TYPE: ep.JSON_MEDIA_TYPE} if payload is not None else None
        accepted = frozenset(accept_statuses)
        sent = len(payload or b"")
        attempts = 0

        def attempt() -> Outcome:
            nonlocal attempts
            retry = attempts > 0
            attempts += 1
            if self.pace:
                self.rate_limiter.acquire(endpoint.endpoint_class)
            try:
                response = self.session.request(
                    endpoint.method, url, data=payload, headers=headers, timeout=self.timeout
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                self.stats.record(None, sent, retry)
                connected = not isinstance(exc, requests.ConnectTimeout) and not _never_connected(exc)
                return Outcome(None, failure=exc, connected=connected)
            status = response.status_code
            self.stats.record(status, sent, retry)
            if self.pace:
                self.rate_limiter.update(endpoint.endpoint_class, status, response.headers)
            ok = status < 400 or status in accepted
            data = response.content if ok and not decode else _decode(response)
            return Outcome(status, response.headers, data, ok)

        def log_retry(state: tenacity.RetryCallState) -> None:
            got: Outcome = state.outcome.result()  # type: ignore[union-attr]
            log.warning(
                "Instasent %s %s: %s; retry %d/%d in %.2fs",
                endpoint.method,
                path,
                f"HTTP {got.status}" if got.status is not None else type(got.failure).__name__,
                state.attempt_number,
                self.retry.max_retries,
                state.next_action.sleep if state.next_action else 0.0,
            )

        got = self.retry.run(attempt, idempotent=endpoint.idempotent, before_sleep=log_retry)
        if got.ok:
            assert got.status is not None
            return ApiResponse(got.status, got.data, got.headers)
        if got.failure is not None:
            reason = redact(type(got.failure).__name__ + ": " + str(got.failure), (self._token,))
            raise InstasentConnectionError(endpoint.method, path, reason, attempts=attempts) from None
        raise error_for_status(
            got.status or 0,
            endpoint.method,
            endpoint.path,
            got.data,
            path=path,
            headers=got.headers,
            attempts=attempts,
            secrets=(self._token,),
        )

    def _get(self, endpoint: Endpoint, query: Mapping[str, Any] | None = None, **path: Any) -> Any:
        return self.call(endpoint, path_params=path, query=query).data

    def _post(self, endpoint: Endpoint, json: Any, query: Mapping[str, Any] | None = None, **path: Any) -> Any:
        return self.call(endpoint, path_params=path, query=query, json=json).data

    def _paginate(self, endpoint: Endpoint, paginator: _Paginator[T], path: Mapping[str, Any]) -> Iterator[T]:
        """The one paging loop: ``paginator`` says what to request and reads each page.

        Lazy: nothing is requested before the first page is asked for, and one page is in
        memory at a time. A page request that fails transiently is retried by :meth:`call`
        with the same query and body (the same cursor), so no page is lost or read twice.
        """
        request: _Request | None = paginator.first()
        while request is not None:
            query, body = request
            data = self.call(endpoint, path_params=path, query=query, json=body, decode=paginator.decode).data
            page, request = paginator.next(data)
            yield page

    def _index(
        self, endpoint: Endpoint, filters: Mapping[str, Any] | None, page_size: int, **path: Any
    ) -> Iterator[dict[str, Any]]:
        """Every entity of an index endpoint (``_start``/``_limit`` pages), lazily."""
        pages = self._paginate(endpoint, _OffsetPaginator(filters, page_size), path)
        return (entity for page in pages for entity in page)

    #: What :meth:`scroll` can give; a stand-in client (a test double, a proxy) declares fewer modes.
    scroll_modes: frozenset[str] = frozenset({"entities", "pages", "raw"})

    @overload
    def scroll(
        self, kind: ScrollKind, *, mode: Literal["entities"] = ..., root: Mapping[str, Any] | None = ...,
        segment: str | None = ..., parameter: str | None = ..., page_size: int = ...,
    ) -> Iterator[dict[str, Any]]: ...

    @overload
    def scroll(
        self, kind: ScrollKind, *, mode: Literal["pages"], root: Mapping[str, Any] | None = ...,
        segment: str | None = ..., parameter: str | None = ..., page_size: int = ...,
    ) -> Iterator[ScrollPage]: ...

    @overload
    def scroll(
        self, kind: ScrollKind, *, mode: Literal["raw"], root: Mapping[str, Any] | None = ...,
        segment: str | None = ..., parameter: str | None = ..., page_size: int = ...,
    ) -> Iterator[RawScrollPage]: ...

    def scroll(
        self,
        kind: ScrollKind,
        *,
        mode: ScrollMode = "entities",
        root: Mapping[str, Any] | None = None,
        segment: str | None = None,
        parameter: str | None = None,
        page_size: int = ep.MAX_SCROLL_LIMIT,
    ) -> Iterator[Any]:
        """Scroll the audience, a segment's contacts or the events to the end, lazily.

        Args:
            kind: ``"audience"``, ``"segment"`` (needs ``segment``) or ``"events"``.
            mode: ``"entities"`` yields each entity (a dict); ``"pages"`` yields each
                :class:`ScrollPage`; ``"raw"`` yields each :class:`RawScrollPage`, the page's
                JSON body as bytes with only its metadata read (the same requests, retries
                and end as ``"pages"``, without building Python objects for the entities).
            root: a query filter ``root`` (AudienceQueryFilter, or EventQueryFilter for events).
            segment: the segment uid (``kind="segment"`` only).
            parameter: the parameter of a parameterised dynamic segment (``kind="segment"`` only).
            page_size: entities per page, 1..100.

        Nothing is requested before the first item is asked for, and one page is in memory at
        a time. The ``scroll_*`` methods are shorthands for this one.
        """
        endpoint = ep.SCROLLS.get(kind)
        if endpoint is None:
            raise InstasentConfigError(f"kind must be one of {', '.join(ep.SCROLLS)}; got {kind!r}")
        if kind == "segment" and not segment:
            raise InstasentConfigError("kind='segment' needs segment=<segment uid>")
        if kind != "segment" and (segment or parameter is not None):
            raise InstasentConfigError("segment/parameter are only valid with kind='segment'")
        query = {ep.Q_PARAMETER: parameter} if parameter is not None else None
        path = {"segment_uid": segment} if segment else {}
        body = {ep.ROOT: root}
        if mode == "raw":
            return self._paginate(endpoint, _RawCursorPaginator(body, page_size, query), path)
        if mode not in ("pages", "entities"):
            raise InstasentConfigError(f"mode must be 'entities', 'pages' or 'raw'; got {mode!r}")
        pages = self._paginate(endpoint, _CursorPaginator(body, page_size, query), path)
        if mode == "pages":
            return pages
        return (entity for page in pages for entity in page.entities)

    # -- organization and project ---------------------------------------------------------
    def get_token_info(self) -> dict[str, Any]:
        """``GET /v1/``: the token, its projects, organization and scopes (entity + metadata)."""
        return dict(self._get(ep.TOKEN_INFO) or {})

    def token_scopes(self) -> list[str]:
        """The token's scopes, from ``GET /v1/`` (product tokens) or ``GET /stream``."""
        info = self.get_token_info()
        scopes = (info.get(ep.METADATA) or {}).get(ep.SCOPES)
        return list(scopes or [])

    def get_project(self, project: str | None = None) -> dict[str, Any]:
        """``GET /project/{p}``: the project (``entity``) and its ``metadata``."""
        return dict(self._get(ep.PROJECT, project=project) or {})

    def get_attribute_specs(self, project: str | None = None) -> list[dict[str, Any]]:
        """Project attribute specs (``uid``, ``dataType``, ``multivalue``, ``readonly``, ``unique``...)."""
        return list((self._get(ep.PROJECT_ATTRIBUTE_SPECS, project=project) or {}).get(ep.ENTITIES) or [])

    def get_event_specs(self, project: str | None = None) -> list[dict[str, Any]]:
        """Project event types (``uid``, ``automation``, ``attribution``...)."""
        return list((self._get(ep.PROJECT_EVENT_SPECS, project=project) or {}).get(ep.ENTITIES) or [])

    def get_event_parameter_specs(self, event_type: str, project: str | None = None) -> list[dict[str, Any]]:
        """Parameter specs of one event type at project level (``/specs/events/{type}``)."""
        data = self._get(ep.PROJECT_EVENT_PARAMETER_SPECS, project=project, event_type=event_type) or {}
        return list(data.get(ep.ENTITIES) or [])

    # -- datasources ----------------------------------------------------------------------
    def list_datasources(
        self, filters: Mapping[str, Any] | None = None, *, page_size: int = 100, project: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every datasource of the project (lazy, follows ``_start``/``_limit``)."""
        return self._index(ep.DATASOURCES, filters, page_size, project=project)

    def get_datasource(self, uid: str, project: str | None = None) -> dict[str, Any]:
        return dict((self._get(ep.DATASOURCE, project=project, uid=uid) or {}).get(ep.ENTITY) or {})

    def create_datasource(
        self, name: str, audience_tags: Sequence[str], *, project: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Create an API datasource (``name`` and ``audienceTags`` are required by the API)."""
        body = {"name": name, "audienceTags": list(audience_tags), **fields}
        return dict((self._post(ep.DATASOURCE_CREATE, body, project=project) or {}).get(ep.ENTITY) or {})

    # -- ingest -----------------------------------------------------------------------------
    def get_stream(self, datasource: str | None = None) -> dict[str, Any]:
        """``GET /stream``: organization, project, datasource, stream counters, token scopes."""
        return dict(self._get(ep.STREAM, datasource=datasource) or {})

    def get_stream_attribute_specs(self, datasource: str | None = None) -> list[dict[str, Any]]:
        return list((self._get(ep.STREAM_ATTRIBUTE_SPECS, datasource=datasource) or {}).get(ep.SPECS) or [])

    def get_stream_event_specs(self, datasource: str | None = None) -> list[dict[str, Any]]:
        return list((self._get(ep.STREAM_EVENT_SPECS, datasource=datasource) or {}).get(ep.SPECS) or [])

    def get_stream_event_parameter_specs(
        self, event_type: str, datasource: str | None = None
    ) -> list[dict[str, Any]]:
        data = self._get(ep.STREAM_EVENT_PARAMETER_SPECS, datasource=datasource, event_type=event_type) or {}
        return list(data.get(ep.SPECS) or [])

    def get_stats(self, datasource: str | None = None) -> dict[str, Any]:
        return dict(self._get(ep.STATS, datasource=datasource) or {})

    def push(
        self,
        kind: str,
        items: Sequence[Mapping[str, Any]] | bytes,
        *,
        n_items: int | None = None,
        dry_run: bool = False,
        sync: bool = False,
        datasource: str | None = None,
    ) -> PushResult:
        """Send one batch of at most 100 contacts or events.

        ``items`` may be pre-encoded JSON array bytes (then pass ``n_items``). A 422 (every
        item failed) is returned as a :class:`PushResult`, not raised: per-item errors are data.
        """
        endpoint = {"contacts": ep.PUSH_CONTACTS, "events": ep.PUSH_EVENTS}.get(kind)
        if endpoint is None:
            raise InstasentConfigError(f"kind must be 'contacts' or 'events', got {kind!r}")
        if isinstance(items, (bytes, bytearray)):
            body = bytes(items)
        else:
            n_items = len(items)
            body = orjson.dumps(list(items), option=orjson.OPT_SERIALIZE_NUMPY)
        if n_items is not None and n_items > ep.MAX_ITEMS_PER_PUSH:
            raise InstasentConfigError(f"at most {ep.MAX_ITEMS_PER_PUSH} items per call, got {n_items}")
        query: dict[str, Any] = {}
        if dry_run:
            query[ep.Q_DRY_RUN] = _FLAG
        if sync:
            query[ep.Q_SYNC] = _FLAG
        response = self.call(
            endpoint, path_params={"datasource": datasource}, query=query, body=body, accept_statuses=(422,)
        )
        if response.status == 422 and not (
            isinstance(response.data, Mapping) and (ep.ERRORS in response.data or ep.ENTITY in response.data)
        ):
            raise error_for_status(422, endpoint.method, endpoint.path, response.data, headers=response.headers,
                                   secrets=(self._token,))
        return PushResult.from_body(response.status, response.data, n_items)

    def push_contacts(
        self, contacts: Sequence[Mapping[str, Any]], *, dry_run: bool = False, sync: bool = False,
        datasource: str | None = None,
    ) -> PushResult:
        """Upsert up to 100 contacts by ``_user_id`` (omitted keys kept, ``None`` clears)."""
        return self.push("contacts", contacts, dry_run=dry_run, sync=sync, datasource=datasource)

    def push_events(
        self, events: Sequence[Mapping[str, Any]], *, dry_run: bool = False, sync: bool = False,
        datasource: str | None = None,
    ) -> PushResult:
        """Append up to 100 events; the API drops repeats of an ``_event_id``."""
        return self.push("events", events, dry_run=dry_run, sync=sync, datasource=datasource)

    def get_contact(self, user_id: str, datasource: str | None = None) -> dict[str, Any]:
        """The datasource contact (``contact`` object) for ``user_id``; 404 if unknown."""
        data = self._get(ep.STREAM_CONTACT, datasource=datasource, user_id=user_id) or {}
        return dict(data.get(ep.CONTACT) or data)

    def delete_contact(self, user_id: str, datasource: str | None = None, *, dry_run: bool = False) -> PushResult:
        """Permanently remove a datasource contact (and its share of the audience).

        ``dry_run`` asks the API to check the call without deleting (``?_dryRun``).
        """
        query = {ep.Q_DRY_RUN: _FLAG} if dry_run else None
        response = self.call(ep.DELETE_CONTACT, path_params={"datasource": datasource, "user_id": user_id},
                             query=query)
        return PushResult.from_body(response.status, response.data, 1)

    # -- unified audience -----------------------------------------------------------------
    def get_audience_contact(self, audience_id: str) -> dict[str, Any]:
        return dict((self._get(ep.AUDIENCE_CONTACT, audience_id=audience_id) or {}).get(ep.ENTITY) or {})

    def get_audience_contact_by_user(self, user_id: str) -> dict[str, Any]:
        """Audience contact by ``_user_id`` or any unique attribute value."""
        return dict((self._get(ep.AUDIENCE_BY_USER, user_id=user_id) or {}).get(ep.ENTITY) or {})

    def search_audience_by_phone(self, phone: str) -> list[dict[str, Any]]:
        data = self._get(ep.AUDIENCE_BY_PHONE, phone=phone) or {}
        return _entities(data)

    def search_audience_by_email(self, email: str) -> list[dict[str, Any]]:
        data = self._get(ep.AUDIENCE_BY_EMAIL, email=email) or {}
        return _entities(data)

    def search_audience(
        self,
        root: Mapping[str, Any] | None = None,
        *,
        limit: int = ep.MAX_SEARCH_LIMIT,
        offset: int = 0,
        sort_field: str | None = None,
        sort_asc: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Audience search: at most 50 results, no pagination (use :meth:`scroll_audience`)."""
        body = {"version": "0.0.1", ep.ROOT: root, ep.LIMIT: min(limit, ep.MAX_SEARCH_LIMIT), "offset": offset,
                "sortField": sort_field, "sortAsc": sort_asc}
        return _entities(self._post(ep.AUDIENCE_SEARCH, {k: v for k, v in body.items() if v is not None}))

    def scroll_audience_pages(
        self, root: Mapping[str, Any] | None = None, *, page_size: int = ep.MAX_SCROLL_LIMIT
    ) -> Iterator[ScrollPage]:
        """Pages of the unified audience (optionally filtered by an AudienceQueryFilter ``root``)."""
        return self.scroll("audience", mode="pages", root=root, page_size=page_size)

    def scroll_audience_raw_pages(
        self, root: Mapping[str, Any] | None = None, *, page_size: int = ep.MAX_SCROLL_LIMIT
    ) -> Iterator[RawScrollPage]:
        """:meth:`scroll_audience_pages` with each page's JSON body as bytes (not decoded)."""
        return self.scroll("audience", mode="raw", root=root, page_size=page_size)

    def scroll_audience(
        self, root: Mapping[str, Any] | None = None, *, page_size: int = ep.MAX_SCROLL_LIMIT
    ) -> Iterator[dict[str, Any]]:
        """Every audience contact, lazily."""
        return self.scroll("audience", root=root, page_size=page_size)

    def scroll_segment_pages(
        self,
        segment_uid: str,
        *,
        parameter: str | None = None,
        root: Mapping[str, Any] | None = None,
        page_size: int = ep.MAX_SCROLL_LIMIT,
    ) -> Iterator[ScrollPage]:
        """Pages of a segment's contacts; ``parameter`` for parameterised dynamic segments."""
        return self.scroll("segment", mode="pages", segment=segment_uid, parameter=parameter, root=root,
                           page_size=page_size)

    def scroll_segment_raw_pages(
        self,
        segment_uid: str,
        *,
        parameter: str | None = None,
        root: Mapping[str, Any] | None = None,
        page_size: int = ep.MAX_SCROLL_LIMIT,
    ) -> Iterator[RawScrollPage]:
        """:meth:`scroll_segment_pages` with each page's JSON body as bytes (not decoded)."""
        return self.scroll("segment", mode="raw", segment=segment_uid, parameter=parameter, root=root,
                           page_size=page_size)

    def scroll_segment(
        self, segment_uid: str, *, parameter: str | None = None, page_size: int = ep.MAX_SCROLL_LIMIT
    ) -> Iterator[dict[str, Any]]:
        """Every contact of a segment, lazily."""
        return self.scroll("segment", segment=segment_uid, parameter=parameter, page_size=page_size)

    def aggregate_audience(
        self, aggregations: Mapping[str, Any], root: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Audience aggregations (needs PROJECT_AGGREGATIONS): ``{"entities": ..., "metadata": ...}``."""
        body: dict[str, Any] = {"aggregations": dict(aggregations)}
        if root is not None:
            body[ep.ROOT] = root
        return dict(self._post(ep.AUDIENCE_AGGREGATIONS, body) or {})

    def audience_action(
        self,
        action: str,
        audience_id: str,
        *,
        reason: str | None = None,
        utm: Mapping[str, str] | None = None,
        sync: bool = False,
    ) -> dict[str, Any]:
        """Subscribe/unsubscribe SMS or email, or delete an audience contact.

        ``action`` is one of ``sms-subscribe``, ``sms-unsubscribe``, ``email-subscribe``,
        ``email-unsubscribe``, ``delete-contact``; ``utm`` keys: ``utm-source``,
        ``utm-medium``, ``utm-campaign`` (unsubscribe only).
        """
        if action not in ep.AUDIENCE_ACTIONS:
            raise InstasentConfigError(f"action must be one of {', '.join(ep.AUDIENCE_ACTIONS)}; got {action!r}")
        body: dict[str, Any] = {"audienceId": audience_id}
        if reason:
            body["reason"] = reason
        body.update(utm or {})
        query = {ep.Q_SYNC: "true"} if sync else None
        return dict(self._post(ep.AUDIENCE_ACTION, body, query, action=action) or {})

    def get_audience_events(self, audience_id: str) -> dict[str, Any]:
        """Latest events of an audience contact, classified by event type."""
        data = self._get(ep.AUDIENCE_EVENTS, audience_id=audience_id) or {}
        return dict(data.get(ep.ENTITIES) or {})

    # -- events -----------------------------------------------------------------------------
    def search_events(
        self, root: Mapping[str, Any] | None = None, *, limit: int = ep.MAX_SEARCH_LIMIT, **options: Any
    ) -> list[dict[str, Any]]:
        """Event search: at most 50 results (use :meth:`scroll_events` for more)."""
        body = {"version": "0.0.1", ep.ROOT: root, ep.LIMIT: min(limit, ep.MAX_SEARCH_LIMIT), **options}
        return _entities(self._post(ep.EVENT_SEARCH, {k: v for k, v in body.items() if v is not None}))

    def scroll_events_pages(
        self, root: Mapping[str, Any] | None = None, *, page_size: int = ep.MAX_SCROLL_LIMIT
    ) -> Iterator[ScrollPage]:
        """Pages of the project's events (optionally filtered by an EventQueryFilter ``root``)."""
        return self.scroll("events", mode="pages", root=root, page_size=page_size)

    def scroll_events_raw_pages(
        self, root: Mapping[str, Any] | None = None, *, page_size: int = ep.MAX_SCROLL_LIMIT
    ) -> Iterator[RawScrollPage]:
        """:meth:`scroll_events_pages` with each page's JSON body as bytes (not decoded)."""
        return self.scroll("events", mode="raw", root=root, page_size=page_size)

    def scroll_events(
        self, root: Mapping[str, Any] | None = None, *, page_size: int = ep.MAX_SCROLL_LIMIT
    ) -> Iterator[dict[str, Any]]:
        """Every event, lazily."""
        return self.scroll("events", root=root, page_size=page_size)

    # -- segments, campaigns, automations ------------------------------------------------------
    def list_segments(self, filters: Mapping[str, Any] | None = None, *, page_size: int = 100
                      ) -> Iterator[dict[str, Any]]:
        return self._index(ep.SEGMENTS, filters, page_size)

    def list_dynamic_segments(self) -> list[dict[str, Any]]:
        """Dynamic segments that need no parameter."""
        return _entities(self._get(ep.DYNAMIC_SEGMENTS))

    def get_segment(self, uid: str, *, parameter: str | None = None) -> dict[str, Any]:
        query = {ep.Q_PARAMETER: parameter} if parameter is not None else None
        return dict((self._get(ep.SEGMENT, query, uid=uid) or {}).get(ep.ENTITY) or {})

    def list_campaigns(self, filters: Mapping[str, Any] | None = None, *, page_size: int = 100
                       ) -> Iterator[dict[str, Any]]:
        return self._index(ep.CAMPAIGNS, filters, page_size)

    def get_campaign(self, campaign_id: str | int) -> dict[str, Any]:
        return dict((self._get(ep.CAMPAIGN, id=campaign_id) or {}).get(ep.ENTITY) or {})

    def list_automations(self, filters: Mapping[str, Any] | None = None, *, page_size: int = 100
                         ) -> Iterator[dict[str, Any]]:
        return self._index(ep.AUTOMATIONS, filters, page_size)

    def get_automation(self, automation_id: str | int) -> dict[str, Any]:
        return dict((self._get(ep.AUTOMATION, id=automation_id) or {}).get(ep.ENTITY) or {})

    # -- SMS ---------------------------------------------------------------------------------
    def list_sms_senders(self) -> dict[str, Any]:
        """``{"entities": [senders], "metadata": {"defaultSender": ...}}``."""
        return dict(self._get(ep.SMS_SENDERS) or {})

    def get_sms(self, sms_id: str | int) -> dict[str, Any]:
        return dict((self._get(ep.SMS, id=sms_id) or {}).get(ep.ENTITY) or {})

    def list_sms_for_audience(self, audience_id: str, filters: Mapping[str, Any] | None = None,
                              *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        return self._index(ep.SMS_BY_AUDIENCE, filters, page_size, audience_id=audience_id)

    def list_direct_sms(self, utm_term: str | None = None, filters: Mapping[str, Any] | None = None,
                        *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        if utm_term:
            return self._index(ep.SMS_DIRECT_LIST_UTM, filters, page_size, utm_term=utm_term)
        return self._index(ep.SMS_DIRECT_LIST, filters, page_size)

    def send_direct_sms(
        self,
        audience_id: str,
        text: str,
        *,
        sender: str = "default",
        utm_term: str | None = None,
        allow_unicode: bool = False,
    ) -> dict[str, Any]:
        """Send one direct SMS to an audience contact (needs PROJECT_DIRECT_WRITE).

        Not idempotent: it is retried only when the API certainly did not act (429, or no
        connection), never after a 5xx or a lost response, so a message is never sent twice.
        """
        if utm_term is not None and len(utm_term) > 40:
            raise InstasentConfigError("utm_term must be at most 40 characters")
        endpoint = ep.SMS_SEND_UTM if utm_term else ep.SMS_SEND
        body = {"text": text, "allowUnicode": allow_unicode}
        data = self._post(endpoint, body, sender=sender, audience_id=audience_id, utm_term=utm_term)
        return dict((data or {}).get(ep.ENTITY) or data or {})


def _entities(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, Mapping):
        return []
    value = data.get(ep.ENTITIES)
    if value is None and isinstance(data.get(ep.ENTITY), list):
        value = data[ep.ENTITY]
    if value is None and isinstance(data.get(ep.ENTITY), Mapping):
        value = [data[ep.ENTITY]]
    return list(value or [])


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
    data = data or {}
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
    """Whether a raw scroll page has entities, its cursor and total hits, as :func:`_page_fields`
    reads them from the decoded page; the entities are not decoded (with msgspec)."""
    if _ENVELOPE is not None:
        try:
            page = _ENVELOPE.decode(content)
        except _ENVELOPE_ERRORS:
            pass  # not a JSON object, or no body: decoded in full below
        else:
            _, cursor, total = _page_fields({ep.METADATA: page.metadata})
            return _json_truthy(bytes(page.entities)), cursor, total
    entities, cursor, total = _page_fields(_decode_content(content))
    return bool(entities), cursor, total


def _json_truthy(text: bytes) -> bool:
    """``bool(orjson.loads(text))`` without decoding a large array or object."""
    text = text.strip()
    if not text:
        return False  # the field is absent
    if text[:1] in (b"[", b"{"):
        return bool(text[1:-1].strip())
    return bool(orjson.loads(text))


def _decode_content(content: bytes) -> Any:
    """What :func:`_decode` returns for a response with this body."""
    if not content:
        return None
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return content.decode("utf-8", errors="replace")


def _decode(response: requests.Response) -> Any:
    content = response.content
    if not content:
        return None
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return response.text


def _never_connected(exc: Exception) -> bool:
    """True when the connection was refused/unresolvable, so the request was never sent."""
    text = repr(exc)
    return "NewConnectionError" in text or "Connection refused" in text or "NameResolutionError" in text


__all__ = ["ClientStats", "InstasentClient", "InstasentHTTPError", "ScrollKind", "ScrollMode"]
