"""Product API endpoints: audience, events, segments, campaigns, automations, SMS."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import render
from .audience import AudienceContact
from .auth import privacy_level
from .core import ApiError, Ctx, Response, Router, json_response
from .query import (
    FilterContext,
    FilterError,
    as_list,
    audience_getter,
    canon,
    compile_audience_filter,
    compile_event_filter,
    decode_cursor,
    encode_cursor,
    index_query,
    parse_limit,
    sort_items,
    to_number,
)
from .store import Event, ProjectState
from .validation import iso_ms, normalize_phone, phone_key

router = Router()
_P = "/project/{p}"
MAX_SEARCH = 50
MAX_SCROLL = 100
MAX_LOOKUP = 10
DEFAULT_SEARCH = 10
MAX_UTM_TERM = 40
PARAMETER = "$parameter"

_GSM = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXT = set("^{}\\[~]|€\f")


# --- helpers ----------------------------------------------------------------------------------------
def _level(ctx: Ctx) -> int:
    return privacy_level(ctx.scopes)


def _contact_json(ctx: Ctx, contact: AudienceContact) -> dict[str, Any]:
    return render.audience_contact(contact, ctx.ps, _level(ctx))


def _filter_error(exc: FilterError) -> ApiError:
    return ApiError(400, str(exc))


def _substitute(node: Any, params: list[str]) -> Any:
    if node == PARAMETER:
        return list(params)
    if isinstance(node, list):
        out: list[Any] = []
        for v in node:
            if v == PARAMETER:
                out.extend(params)
            else:
                out.append(_substitute(v, params))
        return out
    if isinstance(node, Mapping):
        return {k: _substitute(v, params) for k, v in node.items()}
    return node


def segment_predicate(
    ps: ProjectState, uid: str, params: list[str] | None, depth: int = 0
) -> Callable[[Any], bool]:
    seg = ps.config.segments.get(uid)
    if seg is None:
        raise FilterError(f"Unknown segment '{uid}'")
    if depth > 8:
        raise FilterError("Segments nest too deeply")
    if seg.type == "static":
        members = frozenset(seg.members)
        return lambda c: not members.isdisjoint(c.user_ids)
    root: Any = seg.root
    if seg.parameterized:
        if not params:
            raise FilterError(f"Segment '{uid}' requires a parameter (values separated by '|')")
        root = _substitute(root, params)
    return compile_audience_filter(root, _filter_context(ps, depth + 1))


def _filter_context(ps: ProjectState, depth: int = 0) -> FilterContext:
    return FilterContext(
        segment=lambda uid, params: segment_predicate(ps, uid, params, depth),
        events_of=ps.events_of,
        now=ps.clock.now(),
    )


def _audience_filter(ctx: Ctx, root: Any) -> Callable[[Any], bool]:
    try:
        return compile_audience_filter(root, _filter_context(ctx.ps))
    except FilterError as exc:
        raise _filter_error(exc) from exc


def _scroll(
    ctx: Ctx,
    kind: str,
    build: Callable[[], Sequence[Any]],
    render_one: Callable[[Any], Any],
    alive: Callable[[Any], bool],
) -> Response:
    body = ctx.req.json_object()
    try:
        limit = parse_limit(body.get("limit"), default=MAX_SCROLL, maximum=MAX_SCROLL)
    except FilterError as exc:
        raise _filter_error(exc) from exc
    owner = f"{kind}:{ctx.ps.config.uid}"
    cursor = body.get("cursor")
    if cursor:
        if not isinstance(cursor, str):
            raise ApiError(400, "cursor must be a string")
        try:
            sid, offset = decode_cursor(cursor)
        except FilterError as exc:
            raise _filter_error(exc) from exc
        snapshot = ctx.store.snapshots.get(sid, owner)
        if snapshot is None:
            raise ApiError(400, "Cursor expired or unknown: restart the scroll without a cursor")
    else:
        snapshot = build()
        sid = ctx.store.snapshots.create(owner, snapshot)
        offset = 0
    page = snapshot[offset : offset + limit]
    end = offset + len(page)
    # records are immutable: render without the lock
    entities = [render_one(x) for x in page if alive(x)]
    return json_response(
        200,
        {
            "entities": entities,
            "metadata": {
                "cursor": encode_cursor(sid, end) if end < len(snapshot) else None,
                "limit": limit,
                "totalHits": len(snapshot),
            },
        },
    )


# --- audience contacts ----------------------------------------------------------------------------------
@router.add("GET", _P + "/audience/user/{user_id}", "PROJECT_AUDIENCE_READ")
def audience_by_user(ctx: Ctx) -> Response:
    contact = ctx.store.find_by_user(ctx.ps, ctx.params["user_id"])
    if contact is None:
        raise ApiError(404, f"No audience contact for user '{ctx.params['user_id']}'")
    return json_response(200, {"entity": _contact_json(ctx, contact)})


@router.add("GET", _P + "/audience/search/phone/{phone}", "PROJECT_AUDIENCE_READ")
def audience_by_phone(ctx: Ctx) -> Response:
    phone = normalize_phone(ctx.params["phone"])
    found = ctx.store.find_audience(ctx.ps, "_phone_mobile", phone)[:MAX_LOOKUP]
    return json_response(200, {"entities": [_contact_json(ctx, c) for c in found]})


@router.add("GET", _P + "/audience/search/email/{email}", "PROJECT_AUDIENCE_READ")
def audience_by_email(ctx: Ctx) -> Response:
    found = ctx.store.find_audience(ctx.ps, "_email", ctx.params["email"])[:MAX_LOOKUP]
    return json_response(200, {"entities": [_contact_json(ctx, c) for c in found]})


def _search_paging(body: dict[str, Any]) -> tuple[int, int]:
    """``limit`` (capped at 50) and ``offset`` of an audience or event search body."""
    try:
        limit = parse_limit(body.get("limit"), default=DEFAULT_SEARCH, maximum=MAX_SEARCH)
        offset = int(body.get("offset") or 0)
    except (FilterError, ValueError, TypeError) as exc:
        raise ApiError(400, f"Invalid paging: {exc}") from exc
    if offset < 0:
        raise ApiError(400, "offset must be >= 0")
    return limit, offset


def _search_response(entities: list[Any], total: int, limit: int, offset: int) -> Response:
    metadata = {"totalHits": total, "limit": limit, "offset": offset}
    return json_response(200, {"entities": entities, "metadata": metadata})


@router.add("POST", _P + "/audience/search", "PROJECT_AUDIENCE_LIST", endpoint_class="hot")
def audience_search(ctx: Ctx) -> Response:
    body = ctx.req.json_object()
    limit, offset = _search_paging(body)
    root = body.get("root")
    pred = _audience_filter(ctx, root)
    candidates = _user_id_candidates(ctx, root)
    if candidates is None:
        candidates = ctx.store.audience_snapshot(ctx.ps)
    rows = _sort_audience([c for c in candidates if pred(c)], body)
    page = rows[offset : offset + limit]
    entities = [_contact_json(ctx, c) for c in page]
    return _search_response(entities, len(rows), limit, offset)


def _user_id_candidates(ctx: Ctx, root: Any) -> list[AudienceContact] | None:
    """For a root that is one ``_user_id`` ``eq``/``in`` condition (how clients look contacts
    up by id), the audience contacts that can match, from the ``_user_id`` index instead of a
    scan of the whole audience; None for any other root. The filter still decides."""
    if not isinstance(root, Mapping) or root.get("type") != "attribute_condition":
        return None
    if root.get("key") != "_user_id" or root.get("operator", "eq") not in ("eq", "in"):
        return None
    values = as_list(root.get("values", root.get("value")))
    if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values):
        return None
    return ctx.store.audience_with_user_ids(ctx.ps, [canon(v) for v in values])


def _sort_audience(rows: list[AudienceContact], body: Mapping[str, Any]) -> list[AudienceContact]:
    """Order of an audience search or scroll: ``sortField``/``sortAsc``, else audience id."""
    sort_field = body.get("sortField")
    if sort_field:
        rows.sort(key=lambda c: c.id)
        return sort_items(rows, audience_getter(str(sort_field)), bool(body.get("sortAsc", True)))
    rows.sort(key=lambda c: c.id, reverse=body.get("sortAsc") is False)
    return rows


def _audience_scroll(ctx: Ctx, pred: Callable[[Any], bool], kind: str) -> Response:
    body = ctx.req.json_object()

    def build() -> list[AudienceContact]:
        rows = [c for c in ctx.store.audience_snapshot(ctx.ps) if pred(c)]
        return _sort_audience(rows, body)

    current = ctx.ps.audience.audience
    return _scroll(ctx, kind, build, lambda c: _contact_json(ctx, c), lambda c: c.id in current)


@router.add("POST", _P + "/audience/scroll", "PROJECT_AUDIENCE_LIST", endpoint_class="hot")
def audience_scroll(ctx: Ctx) -> Response:
    body = ctx.req.json_object()
    pred = _audience_filter(ctx, None if body.get("cursor") else body.get("root"))
    return _audience_scroll(ctx, pred, "audience")


@router.add("POST", _P + "/audience/segment/{segment}/scroll", "PROJECT_AUDIENCE_LIST", endpoint_class="hot")
def segment_scroll(ctx: Ctx) -> Response:
    uid = ctx.params["segment"]
    if uid not in ctx.ps.config.segments:
        raise ApiError(404, f"Segment '{uid}' not found")
    body = ctx.req.json_object()
    param = ctx.req.arg("parameter")
    params = [p for p in param.split("|") if p] if param else None
    if body.get("cursor"):
        pred: Callable[[Any], bool] = lambda _c: True  # noqa: E731
    else:
        try:
            seg = segment_predicate(ctx.ps, uid, params)
        except FilterError as exc:
            raise _filter_error(exc) from exc
        extra = _audience_filter(ctx, body.get("root"))
        pred = lambda c: seg(c) and extra(c)  # noqa: E731
    return _audience_scroll(ctx, pred, f"segment:{uid}")


def _aggregate(name: str, spec: Any, rows: list[AudienceContact]) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise ApiError(400, f"aggregation '{name}' must be an object")
    kind = spec.get("type")
    if kind == "count":
        return {"type": "count", "value": len(rows)}
    field = spec.get("field")
    if not isinstance(field, str) or not field:
        raise ApiError(400, f"aggregation '{name}' of type '{kind}' needs a 'field'")
    getter = audience_getter(field)
    if kind == "terms":
        size = spec.get("size", 10)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ApiError(400, f"aggregation '{name}': size must be a positive integer")
        counts: Counter[str] = Counter()
        missing = 0
        for c in rows:
            values = as_list(getter(c))
            if not values:
                missing += 1
            for v in dict.fromkeys(canon(x) for x in values):
                counts[v] += 1
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return {
            "type": "terms",
            "field": field,
            "buckets": [{"key": k, "count": n} for k, n in top[:size]],
            "otherCount": sum(n for _, n in top[size:]),
            "missing": missing,
        }
    if kind == "cardinality":
        return {
            "type": "cardinality",
            "field": field,
            "value": len({canon(x) for c in rows for x in as_list(getter(c))}),
        }
    if kind == "stats":
        nums = [n for c in rows for x in as_list(getter(c)) if (n := to_number(x)) is not None]
        return {
            "type": "stats",
            "field": field,
            "count": len(nums),
            "min": min(nums) if nums else None,
            "max": max(nums) if nums else None,
            "sum": math.fsum(nums),
            "avg": math.fsum(nums) / len(nums) if nums else None,
        }
    raise ApiError(400, f"Unknown aggregation type '{kind}' (supported: terms, count, cardinality, stats)")


@router.add("POST", _P + "/audience/aggregations", "PROJECT_AGGREGATIONS", endpoint_class="hot")
def audience_aggregations(ctx: Ctx) -> Response:
    body = ctx.req.json_object()
    aggs = body.get("aggregations")
    if not isinstance(aggs, Mapping) or not aggs:
        raise ApiError(400, "aggregations is required: {name: {type: terms|count|cardinality|stats, field}}")
    pred = _audience_filter(ctx, body.get("root"))
    rows = [c for c in ctx.store.audience_snapshot(ctx.ps) if pred(c)]
    result = {str(name): _aggregate(str(name), spec, rows) for name, spec in aggs.items()}
    return json_response(200, {"entities": result, "metadata": {"totalHits": len(rows)}})


@router.add("GET", _P + "/audience/{audience_id}/events", "PROJECT_AUDIENCE_DATA_EVENTS")
def audience_events(ctx: Ctx) -> Response:
    with ctx.store.lock:
        contact = ctx.ps.audience.resolve(ctx.params["audience_id"])
        if contact is None:
            raise ApiError(404, f"Audience contact '{ctx.params['audience_id']}' not found")
        events = sorted(ctx.ps.events_of(contact), key=lambda e: (e.date, e.seq), reverse=True)
        grouped: dict[str, list[dict[str, Any]]] = {}
        for ev in events:
            grouped.setdefault(ev.type, []).append(render.event(ev, ctx.ps))
    return json_response(
        200, {"entities": grouped, "metadata": {"audienceId": contact.id, "totalHits": len(events)}}
    )


@router.add("GET", _P + "/audience/{audience_id}", "PROJECT_AUDIENCE_READ")
def audience_contact(ctx: Ctx) -> Response:
    with ctx.store.lock:
        contact = ctx.ps.audience.resolve(ctx.params["audience_id"])
        if contact is None:
            raise ApiError(404, f"Audience contact '{ctx.params['audience_id']}' not found")
        entity = _contact_json(ctx, contact)
    return json_response(200, {"entity": entity})


_ACTIONS: dict[str, tuple[str, bool] | None] = {
    "sms-subscribe": ("_is_subscribed_sms", True),
    "sms-unsubscribe": ("_is_subscribed_sms", False),
    "email-subscribe": ("_is_subscribed_email", True),
    "email-unsubscribe": ("_is_subscribed_email", False),
    "delete-contact": None,
}


@router.add("POST", _P + "/audience/stream/{action}", "PROJECT_AUDIENCE_WRITE")
def audience_action(ctx: Ctx) -> Response:
    action = ctx.params["action"]
    if action not in _ACTIONS:
        raise ApiError(400, f"Unknown audience action '{action}' (supported: {', '.join(_ACTIONS)})")
    body = ctx.req.json_object()
    aid = body.get("audienceId")
    if not isinstance(aid, str) or not aid:
        raise ApiError(400, "audienceId is required")
    change = _ACTIONS[action]
    queued = ctx.store.queued(ctx.req.flag("_sync"))
    if change is None:
        ok = ctx.store.delete_audience_contact(ctx.ps, aid, queued=queued)
    else:
        ok = ctx.store.set_audience_attribute(ctx.ps, aid, change[0], change[1], queued=queued)
    if not ok:
        raise ApiError(404, f"Audience contact '{aid}' not found")
    status = "queued" if queued else "done"
    return json_response(202, {"entity": {"audienceId": aid, "action": action, "status": status}})


# --- events ---------------------------------------------------------------------------------------------
def _event_filter(ctx: Ctx, root: Any) -> Callable[[Any], bool]:
    try:
        return compile_event_filter(root, ctx.ps.clock.now())
    except FilterError as exc:
        raise _filter_error(exc) from exc


_EVENT_SORT: dict[str, Callable[[Event], Any]] = {
    "created-at": lambda e: e.date,
    "_event_date": lambda e: e.date,
    "received-at": lambda e: e.received_at,
    "event-type": lambda e: e.type,
    "_user_id": lambda e: e.user_id,
}


def _sort_events(rows: list[Event], field: str, asc: bool) -> None:
    getter = _EVENT_SORT.get(field)
    if getter is None:
        raise ApiError(400, f"Unknown sortField '{field}' (supported: {', '.join(_EVENT_SORT)})")
    rows.sort(key=lambda e: (getter(e), e.seq), reverse=not asc)


@router.add("POST", _P + "/event/search", "PROJECT_AUDIENCE_DATA_EVENTS", endpoint_class="hot")
def event_search(ctx: Ctx) -> Response:
    body = ctx.req.json_object()
    limit, offset = _search_paging(body)
    pred = _event_filter(ctx, body.get("root"))
    rows = [e for e in ctx.store.events_snapshot(ctx.ps) if pred(e)]
    _sort_events(rows, str(body.get("sortField") or "created-at"), bool(body.get("sortAsc", False)))
    page = rows[offset : offset + limit]
    entities = [render.event(e, ctx.ps) for e in page]
    return _search_response(entities, len(rows), limit, offset)


@router.add("POST", _P + "/event/scroll", "PROJECT_AUDIENCE_DATA_EVENTS", endpoint_class="hot")
def event_scroll(ctx: Ctx) -> Response:
    body = ctx.req.json_object()
    pred = _event_filter(ctx, None if body.get("cursor") else body.get("root"))

    def build() -> list[Event]:
        rows = [e for e in ctx.store.events_snapshot(ctx.ps) if pred(e)]
        if body.get("sortField"):  # as search does; without it, reception order
            _sort_events(rows, str(body["sortField"]), bool(body.get("sortAsc", False)))
        return rows

    events = ctx.ps.events
    return _scroll(ctx, "events", build, lambda e: render.event(e, ctx.ps), lambda e: e.seq in events)


# --- segments, campaigns, automations ---------------------------------------------------------------------
def _segment_entity(seg: Any) -> dict[str, Any]:
    return {
        "uid": seg.uid,
        "name": seg.name,
        "type": seg.type,
        "description": seg.description,
        "parameterized": seg.parameterized,
        "createdAt": render.FIXTURE_TIMESTAMP,
        "updatedAt": render.FIXTURE_TIMESTAMP,
    }


def _index(ctx: Ctx, items: list[dict[str, Any]], **extra_meta: Any) -> Response:
    try:
        page, meta = index_query(items, ctx.req.query)
    except FilterError as exc:
        raise _filter_error(exc) from exc
    return json_response(200, {"entities": page, "metadata": {**meta, **extra_meta}})


@router.add("GET", _P + "/segment", "PROJECT_AUDIENCE_READ")
def segments(ctx: Ctx) -> Response:
    return _index(ctx, [_segment_entity(s) for s in ctx.ps.config.segments.values()])


@router.add("GET", _P + "/segment/dynamic", "PROJECT_AUDIENCE_READ")
def dynamic_segments(ctx: Ctx) -> Response:
    return _index(
        ctx,
        [
            _segment_entity(s)
            for s in ctx.ps.config.segments.values()
            if s.type == "dynamic" and not s.parameterized
        ],
    )


@router.add("GET", _P + "/segment/{uid}", "PROJECT_AUDIENCE_READ")
def segment(ctx: Ctx) -> Response:
    seg = ctx.ps.config.segments.get(ctx.params["uid"])
    if seg is None:
        raise ApiError(404, f"Segment '{ctx.params['uid']}' not found")
    entity = _segment_entity(seg)
    param = ctx.req.arg("parameter")
    params = [p for p in param.split("|") if p] if param else None
    if seg.parameterized and not params:
        entity["size"] = None
    else:
        try:
            pred = segment_predicate(ctx.ps, seg.uid, params)
        except FilterError as exc:
            raise _filter_error(exc) from exc
        entity["size"] = sum(1 for c in ctx.store.audience_snapshot(ctx.ps) if pred(c))
    return json_response(200, {"entity": entity, "metadata": {"parameter": param}})


def _by_id(items: Sequence[Mapping[str, Any]], wanted: str, what: str) -> dict[str, Any]:
    for it in items:
        if str(it.get("id")) == wanted:
            return dict(it)
    raise ApiError(404, f"{what} '{wanted}' not found")


def _fixture_entities(path: str, what: str, scope: str, attr: str) -> None:
    """``GET path`` (the index) and ``GET path/{id}`` for a list the fixture holds as it is."""

    def items(ctx: Ctx) -> Sequence[Mapping[str, Any]]:
        entities: Sequence[Mapping[str, Any]] = getattr(ctx.ps.config, attr)
        return entities

    @router.add("GET", _P + path, scope)
    def index(ctx: Ctx) -> Response:
        return _index(ctx, [dict(c) for c in items(ctx)])

    @router.add("GET", _P + path + "/{id}", scope)
    def one(ctx: Ctx) -> Response:
        return json_response(200, {"entity": _by_id(items(ctx), ctx.params["id"], what)})


_fixture_entities("/campaign", "Campaign", "PROJECT_CAMPAIGN_READ", "campaigns")
_fixture_entities("/automation", "Automation", "PROJECT_AUTOMATION_READ", "automations")


# --- SMS ---------------------------------------------------------------------------------------------
def _sender_entity(s: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in s.items() if k != "default"}


@router.add("GET", _P + "/channel/sms/sender", "PROJECT_DIRECT_READ")
def sms_senders(ctx: Ctx) -> Response:
    senders = [_sender_entity(s) for s in ctx.ps.config.sms_senders]
    default = next((s for s in senders if s.get("id") == ctx.ps.config.default_sender_id), None)
    return _index(ctx, senders, defaultSender=default)


def _sms_list(ctx: Ctx, pred: Callable[[Mapping[str, Any]], bool]) -> Response:
    with ctx.store.lock:
        items = [dict(s) for s in ctx.ps.sms.values() if pred(s)]
    return _index(ctx, items)


@router.add("GET", _P + "/channel/sms/sms/direct", "PROJECT_DIRECT_READ")
def sms_direct_list(ctx: Ctx) -> Response:
    return _sms_list(ctx, lambda s: s.get("source") == "direct")


@router.add("GET", _P + "/channel/sms/sms/direct/{utm_term}", "PROJECT_DIRECT_READ")
def sms_direct_list_utm(ctx: Ctx) -> Response:
    utm = ctx.params["utm_term"]
    return _sms_list(ctx, lambda s: s.get("source") == "direct" and s["metadata"].get("utmTerm") == utm)


def _international_phone(value: str) -> str | None:
    """``+CC…`` (international code mandatory: a leading ``+`` or ``00``) or ``None``."""
    phone = normalize_phone(value)
    if phone.startswith("+") and 6 <= len(phone) - 1 <= 15 and phone[1:].isdigit():
        return phone
    return None


def _resolve_contact(ctx: Ctx, value: str) -> AudienceContact | None:
    """An audience id, or a phone number with its international code (n8n: "Audience ID or
    Phone … normalized automatically, International code is mandatory"). Call under the lock."""
    contact = ctx.ps.audience.resolve(value)
    if contact is None and (phone := _international_phone(value)) is not None:
        index = ctx.ps.audience
        if "_phone_mobile" in index.merging:
            found = index.find("_phone_mobile", phone)
        else:
            found = [
                c
                for c in index.audience.values()
                if c.attrs.get("_phone_mobile") is not None and phone_key(c.attrs["_phone_mobile"]) == phone[1:]
            ]
        contact = min(found, key=lambda c: c.id) if found else None
    return contact


@router.add("GET", _P + "/channel/sms/sms/audience/{audience_id}", "PROJECT_DIRECT_READ")
def sms_by_audience(ctx: Ctx) -> Response:
    value = ctx.params["audience_id"]
    with ctx.store.lock:
        contact = _resolve_contact(ctx, value)
    ids = {value} if contact is None else {value, contact.id, *contact.audience_ids}
    phone = _international_phone(value)
    return _sms_list(
        ctx, lambda s: s["audienceContact"]["id"] in ids or (phone is not None and s["normalizedTo"] == phone)
    )


def _index_param(ctx: Ctx, name: str) -> int:
    raw = ctx.params[name]
    if not raw.isdigit():
        raise ApiError(400, f"{name} must be an integer >= 0 (0-based)")
    return int(raw)


@router.add("GET", _P + "/channel/sms/sms/send/{send_id}", "PROJECT_DIRECT_READ")
def sms_by_send(ctx: Ctx) -> Response:
    send_id = ctx.params["send_id"]
    return _sms_list(ctx, lambda s: str(s["metadata"].get("sendId")) == send_id)


@router.add("GET", _P + "/channel/sms/sms/campaign/{campaign_id}/{option_idx}", "PROJECT_DIRECT_READ")
def sms_by_campaign(ctx: Ctx) -> Response:
    campaign = _by_id(ctx.ps.config.campaigns, ctx.params["campaign_id"], "Campaign")
    option = _index_param(ctx, "option_idx")
    return _sms_list(
        ctx,
        lambda s: str(s["metadata"].get("campaignId")) == str(campaign.get("id"))
        and s["metadata"].get("optionIdx") == option,
    )


@router.add("GET", _P + "/channel/sms/sms/automation/{automation_id}/{message_idx}", "PROJECT_DIRECT_READ")
def sms_by_automation(ctx: Ctx) -> Response:
    automation = _by_id(ctx.ps.config.automations, ctx.params["automation_id"], "Automation")
    message = _index_param(ctx, "message_idx")
    return _sms_list(
        ctx,
        lambda s: str(s["metadata"].get("automationId")) == str(automation.get("id"))
        and s["metadata"].get("messageIdx") == message,
    )


@router.add("GET", _P + "/channel/sms/sms/{id}", "PROJECT_DIRECT_READ")
def sms_get(ctx: Ctx) -> Response:
    with ctx.store.lock:
        sms = ctx.ps.sms.get(ctx.params["id"])
        if sms is None:
            raise ApiError(404, f"SMS '{ctx.params['id']}' not found")
        sms = dict(sms)
    return json_response(200, {"entity": sms, "metadata": {"audienceId": sms["audienceContact"]["id"]}})


def _sms_parts(text: str, unicode: bool) -> int:
    if unicode:
        n = len(text)
        return 1 if n <= 70 else math.ceil(n / 67)
    n = sum(2 if ch in _GSM_EXT else 1 for ch in text)
    return 1 if n <= 160 else math.ceil(n / 153)


def _send(ctx: Ctx) -> Response:
    ps = ctx.ps
    sender_param = ctx.params["sender"]
    utm = ctx.params.get("utm_term")
    if utm is not None and len(utm) > MAX_UTM_TERM:
        raise ApiError(400, f"utmTerm must be at most {MAX_UTM_TERM} characters")
    body = ctx.req.json_object()
    text = body.get("text")
    if not isinstance(text, str) or not text:
        raise ApiError(400, "text is required", errors={"text": ["required"]})
    allow_unicode = body.get("allowUnicode", False)
    if not isinstance(allow_unicode, bool):
        raise ApiError(400, "allowUnicode must be a boolean", errors={"allowUnicode": ["expected a boolean"]})
    unicode = any(ch not in _GSM and ch not in _GSM_EXT for ch in text)
    if unicode and not allow_unicode:
        raise ApiError(
            400,
            "text has characters outside the GSM 7-bit alphabet: set allowUnicode to true",
            errors={"text": ["non-GSM characters without allowUnicode"]},
        )
    sender_id = ps.config.default_sender_id if sender_param == "default" else sender_param
    sender = next((s for s in ps.config.sms_senders if str(s.get("id")) == str(sender_id)), None)
    if sender is None:
        raise ApiError(404, f"SMS sender '{sender_param}' not found")
    with ctx.store.lock:
        contact = _resolve_contact(ctx, ctx.params["audience_id"])
        if contact is None:
            raise ApiError(404, f"Audience contact '{ctx.params['audience_id']}' not found")
        phone = contact.attrs.get("_phone_mobile")
    if not phone:
        raise ApiError(
            422,
            "The audience contact has no mobile phone (_phone_mobile)",
            errors={"_phone_mobile": ["missing"]},
        )
    with ctx.store.lock:
        sms_id = ctx.store.next_id()
    now = iso_ms(ctx.store.clock.now())
    normalized = normalize_phone(str(phone))
    parts = _sms_parts(text, unicode)
    sms = {
        "id": sms_id,
        "from": sender.get("from"),
        "to": phone,
        "normalizedTo": normalized if normalized.startswith("+") else "+" + normalized,
        "text": text,
        "deliveredText": text,
        "status": "sent",
        "statusCode": None,
        "encoding": "UCS2" if unicode else "GSM_7BIT",
        "unicode": unicode,
        "allowUnicode": allow_unicode,
        "charsCount": len(text),
        "messagesCount": parts,
        "country": contact.attrs.get("_country_code"),
        "pricePerSms": 0.05,
        "priceUser": round(0.05 * parts, 4),
        "charged": True,
        "inbound": False,
        "source": "direct",
        "scheduledAt": None,
        "sentAt": now,
        "deliveredAt": None,
        "createdAt": now,
        "metadata": {"utmTerm": utm, "senderId": sender.get("id")},
        "audienceContact": {"id": contact.id, "project": ps.config.uid},
    }
    with ctx.store.lock:
        ps.sms[sms_id] = sms
    return json_response(201, {"entity": sms})


@router.add("POST", _P + "/channel/sms/sms/direct/{sender}/{audience_id}", "PROJECT_DIRECT_WRITE")
def sms_send(ctx: Ctx) -> Response:
    return _send(ctx)


@router.add("POST", _P + "/channel/sms/sms/direct/{sender}/{audience_id}/{utm_term}", "PROJECT_DIRECT_WRITE")
def sms_send_utm(ctx: Ctx) -> Response:
    return _send(ctx)
