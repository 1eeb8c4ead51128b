"""``InstasentClient``: a plain-Python client for the whole Instasent Product and Ingest API.

The client's endpoint layer: one job, one method per API operation (about 45), each a thin
layer that builds a path, query and body and reads the answer. Sending is inherited from
``Transport`` (the pooled session, timeouts, pacing, retries, error
mapping); listings and scrolls are lazy iterators from ``paging`` that hold one page at
a time. It knows nothing of Airflow, and is thread-safe.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, overload

import orjson

from . import endpoints as ep
from .endpoints import Endpoint, ScrollKind, SmsListKind
from .errors import InstasentConfigError, InstasentHTTPError, error_for_status
from .models import PushResult, RawScrollPage, ScrollPage
from .paging import CursorPaginator, OffsetPaginator, RawCursorPaginator, paginate
from .transport import FLAG, ClientStats, Transport

#: What ``InstasentClient.scroll`` yields: entities, decoded pages, or raw pages.
ScrollMode = Literal["entities", "pages", "raw"]


class InstasentClient(Transport):
    """Client for the Instasent Product API and its built-in Ingest API.

    Args:
        token: a project/organization token or a datasource token. Never logged.
        project: project UID used by every project-scoped call (override per call).
        datasource: datasource UID for ingest calls; ``dsapi`` is the API's alias for the
            project's first API datasource.
        base_url: API root without ``/v1``.
        timeout: seconds, or ``(connect, read)``; applies to every request. The read timeout is
            per socket read, so a server that trickles bytes is also bounded by a deadline for
            the whole answer: ``request_deadline`` seconds (default: connect + 2 × read).
        request_deadline: the longest one attempt may take, answer body included.
        max_retries: retries after the first attempt on 429, 5xx and lost connections.
        max_retry_time: give up retrying after this many seconds in total.
        backoff_base: first exponential backoff, seconds (doubles each retry).
        backoff_max: ceiling of one backoff, seconds.
        verify: TLS verification: True (default), False, or a CA-bundle path.
        pool_size: connections kept alive; set it to at least your concurrency.
        pace: pace requests by the ``X-RateLimit-*`` headers (see ``RateLimiter``).
        session: a ``requests.Session`` to use instead of a new one.
        long_wait: when the API asks to wait longer than this many seconds (pacing or a 429),
            raise ``LongWaitError`` instead of sleeping (None, the default: always sleep).

    Example::

        with InstasentClient(token="...", project="my-project") as client:
            for contact in client.scroll_audience():
                print(contact["id"])
    """

    def __repr__(self) -> str:  # the token is deliberately absent
        return (
            f"InstasentClient(base_url={self.base_url!r}, project={self.project!r}, "
            f"datasource={self.datasource!r})"
        )

    # -- plumbing -------------------------------------------------------------------------
    def _get(self, endpoint: Endpoint, query: Mapping[str, Any] | None = None, **path: Any) -> Any:
        return self.call(endpoint, path_params=path, query=query).data

    def _post(self, endpoint: Endpoint, json: Any, query: Mapping[str, Any] | None = None, **path: Any) -> Any:
        return self.call(endpoint, path_params=path, query=query, json=json).data

    def _index(
        self, endpoint: Endpoint, filters: Mapping[str, Any] | None, page_size: int, **path: Any
    ) -> Iterator[dict[str, Any]]:
        """Every entity of an index endpoint (``_start``/``_limit`` pages), lazily."""
        pages = paginate(self, endpoint, OffsetPaginator(filters, page_size), path)
        return (entity for page in pages for entity in page)

    #: What ``scroll`` can give; a stand-in client (a test double, a proxy) declares fewer modes.
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
                ``ScrollPage``; ``"raw"`` yields each ``RawScrollPage``, the page's
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
            return paginate(self, endpoint, RawCursorPaginator(body, page_size, query), path)
        if mode not in ("pages", "entities"):
            raise InstasentConfigError(f"mode must be 'entities', 'pages' or 'raw'; got {mode!r}")
        pages = paginate(self, endpoint, CursorPaginator(body, page_size, query), path)
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
        item failed) is returned as a ``PushResult``, not raised: per-item errors are data.
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
            query[ep.Q_DRY_RUN] = FLAG
        if sync:
            query[ep.Q_SYNC] = FLAG
        response = self.call(
            endpoint, path_params={"datasource": datasource}, query=query, body=body, accept_statuses=(422,)
        )
        if response.status == 422 and not (
            isinstance(response.data, Mapping) and (ep.ERRORS in response.data or ep.ENTITY in response.data)
        ):
            raise error_for_status(422, endpoint.method, endpoint.path, response.data, headers=response.headers,
                                   secrets=(self._token,))
        return PushResult.from_body(response.status, response.data, n_items, secrets=(self._token,))

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
        query = {ep.Q_DRY_RUN: FLAG} if dry_run else None
        response = self.call(ep.DELETE_CONTACT, path_params={"datasource": datasource, "user_id": user_id},
                             query=query)
        return PushResult.from_body(response.status, response.data, 1, secrets=(self._token,))

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
        """Audience search: at most 50 results, no pagination (use ``scroll_audience``)."""
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
        """``scroll_audience_pages`` with each page's JSON body as bytes (not decoded)."""
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
        """``scroll_segment_pages`` with each page's JSON body as bytes (not decoded)."""
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
        """Event search: at most 50 results (use ``scroll_events`` for more)."""
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
        """``scroll_events_pages`` with each page's JSON body as bytes (not decoded)."""
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

    def list_sms(
        self,
        kind: SmsListKind,
        *,
        filters: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
        page_size: int = 100,
        **path: Any,
    ) -> Iterator[dict[str, Any]]:
        """Every SMS of one listing (``endpoints.SMS_LISTS``), lazily, page by page.

        Args:
            kind: ``"audience"`` (``audience_id=``: an audience id or a phone number with its
                international code), ``"send"`` (``send_id=``), ``"campaign"``
                (``campaign_id=``, ``option_idx=``, 0-based), ``"automation"``
                (``automation_id=``, ``message_idx=``, 0-based), ``"direct"`` or
                ``"direct_utm"`` (``utm_term=``).
            filters: Query Filter parameters (``{"status_in": "sent,delivered"}``).
            query: a Query Filter as JSON, sent as ``_q`` (``{"filter": [...], "sort": [...]}``);
                the client pages with ``_start``/``_limit``, so a ``paging`` key is refused.
            page_size: SMS per page.
        """
        entry = ep.SMS_LISTS.get(kind)
        if entry is None:
            raise InstasentConfigError(f"kind must be one of {', '.join(ep.SMS_LISTS)}; got {kind!r}")
        endpoint, params = entry
        missing = [name for name in params if path.get(name) in (None, "")]
        extra = sorted(set(path) - set(params))
        if missing or extra:
            raise InstasentConfigError(
                f"list_sms({kind!r}) takes {', '.join(params) or 'no path argument'}"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unexpected {', '.join(extra)}" if extra else ""))
        merged = dict(filters or {})
        if query is not None:
            if "paging" in query:
                raise InstasentConfigError("query must not carry 'paging': the client pages with _start/_limit")
            merged[ep.Q_QUERY] = orjson.dumps(dict(query)).decode()
        return self._index(endpoint, merged, page_size, **path)

    def list_sms_for_audience(self, audience_id: str, filters: Mapping[str, Any] | None = None,
                              *, query: Mapping[str, Any] | None = None, page_size: int = 100
                              ) -> Iterator[dict[str, Any]]:
        """The SMS of one contact: ``audience_id`` is an audience id or a phone number in E.164."""
        return self.list_sms("audience", filters=filters, query=query, page_size=page_size, audience_id=audience_id)

    def list_sms_for_send(self, send_id: str | int, filters: Mapping[str, Any] | None = None,
                          *, query: Mapping[str, Any] | None = None, page_size: int = 100
                          ) -> Iterator[dict[str, Any]]:
        return self.list_sms("send", filters=filters, query=query, page_size=page_size, send_id=send_id)

    def list_sms_for_campaign(self, campaign_id: str | int, option_idx: int = 0,
                              filters: Mapping[str, Any] | None = None, *, query: Mapping[str, Any] | None = None,
                              page_size: int = 100) -> Iterator[dict[str, Any]]:
        return self.list_sms("campaign", filters=filters, query=query, page_size=page_size,
                             campaign_id=campaign_id, option_idx=option_idx)

    def list_sms_for_automation(self, automation_id: str | int, message_idx: int = 0,
                                filters: Mapping[str, Any] | None = None, *, query: Mapping[str, Any] | None = None,
                                page_size: int = 100) -> Iterator[dict[str, Any]]:
        return self.list_sms("automation", filters=filters, query=query, page_size=page_size,
                             automation_id=automation_id, message_idx=message_idx)

    def list_direct_sms(self, utm_term: str | None = None, filters: Mapping[str, Any] | None = None,
                        *, query: Mapping[str, Any] | None = None, page_size: int = 100
                        ) -> Iterator[dict[str, Any]]:
        if utm_term:
            return self.list_sms("direct_utm", filters=filters, query=query, page_size=page_size, utm_term=utm_term)
        return self.list_sms("direct", filters=filters, query=query, page_size=page_size)

    def send_direct_sms(
        self,
        audience_id: str,
        text: str,
        *,
        sender: str = "default",
        utm_term: str | None = None,
        allow_unicode: bool = False,
    ) -> dict[str, Any]:
        """Send one direct SMS (needs PROJECT_DIRECT_WRITE).

        ``audience_id`` is an audience id, or a phone number with its international code
        (E.164, ``+34600000001``), which the API resolves to its contact (n8n: "Audience ID or
        Phone … normalized automatically").

        Not idempotent: it is retried only when the API certainly did not act (429, or no
        connection), never after a 5xx or a lost response, so a message is never sent twice.
        """
        if utm_term is not None and len(utm_term) > ep.MAX_UTM_TERM:
            raise InstasentConfigError(f"utm_term must be at most {ep.MAX_UTM_TERM} characters")
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


__all__ = ["ClientStats", "InstasentClient", "InstasentHTTPError", "ScrollKind", "ScrollMode"]
