"""Query filters (audience and event ``root`` trees), sorting, cursors and index Query Filters.

A filter tree is compiled once into a predicate; an unknown condition type or operator is a
``FilterError`` naming it (answered 400).
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from .validation import parse_datetime

T = TypeVar("T")
Pred = Callable[[Any], bool]
Getter = Callable[[Any], Any]

OPERATORS = (
    "eq",
    "neq",
    "in",
    "not-in",
    "contains",
    "not-contains",
    "exists",
    "not-exists",
    "matches-string",
    "range-number",
    "range-date",
    "range-date-relative",
    "gt",
    "gte",
    "lt",
    "lte",
)


class FilterError(ValueError):
    """A query filter is malformed (answered 400 with this message)."""


# --- value helpers --------------------------------------------------------------------------------
def canon(value: Any) -> str:
    """Comparable text of a scalar: ``True`` -> ``"1"``, ``10.0`` -> ``"10"``."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        f = float(value)
        if math.isfinite(f) and f.is_integer():
            return str(int(f))
        return repr(f)
    return str(value)


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]


def to_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def to_timestamp(value: Any, *, end_of_day: bool = False) -> float | None:
    """Timestamp of a Unix number, an ISO datetime or an ISO date (start or end of the day)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return None
    if len(value) == 10:
        try:
            d = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            return None
        return d.timestamp() + (86399.999 if end_of_day else 0.0)
    return parse_datetime(value, require_tz=False)


def _first(mapping: Mapping[str, Any], *names: str) -> Any:
    for n in names:
        if n in mapping and mapping[n] is not None:
            return mapping[n]
    return None


def _present(v: Any) -> bool:
    return v is not None and v != "" and v != []


#: ``range-date-relative`` periods, in seconds: the granularity the query-filter docs show
#: (``lowerOffsetPeriod: "day"``); the real API's other periods are unknown, so they are refused.
RELATIVE_PERIODS = {"day": 86400.0}


def _relative_bound(values: Mapping[str, Any], side: str, now: float) -> float | None:
    """One bound of ``range-date-relative``: ``now`` + offset periods, rounded to the period's
    start (lower) or end (upper) when ``<side>Rounding`` is true; None when the offset is null."""
    offset = values.get(f"{side}Offset")
    if offset is None:
        return None
    if isinstance(offset, bool) or not isinstance(offset, (int, float)) or not math.isfinite(offset):
        raise FilterError(f"range-date-relative: {side}Offset must be a number of periods or null")
    period = values.get(f"{side}OffsetPeriod") or "day"
    length = RELATIVE_PERIODS.get(period) if isinstance(period, str) else None
    if length is None:
        raise FilterError(f"range-date-relative: {side}OffsetPeriod {period!r} is not supported "
                          f"(supported: {', '.join(RELATIVE_PERIODS)})")
    bound = now + float(offset) * length
    if values.get(f"{side}Rounding"):
        start = math.floor(bound / length) * length  # periods start at 00:00 UTC
        bound = start if side == "lower" else start + length - 0.001
    return bound


def value_predicate(operator: Any, values: Any, now: float | None = None) -> Callable[[Any], bool]:
    """A test on one attribute value (scalar or list) for ``operator`` and ``values``;
    ``now`` (the emulator's clock) anchors ``range-date-relative``."""
    if operator in ("eq", "in", "neq", "not-in"):
        targets = {canon(v) for v in as_list(values)}

        def match(v: Any) -> bool:
            return any(canon(x) in targets for x in as_list(v))

        if operator in ("neq", "not-in"):
            return lambda v: not match(v)
        return match
    if operator in ("contains", "not-contains"):
        needles = [str(v).lower() for v in as_list(values)]

        def has(v: Any) -> bool:
            return any(n in str(x).lower() for x in as_list(v) for n in needles)

        return (lambda v: not has(v)) if operator == "not-contains" else has
    if operator == "exists":
        return _present
    if operator == "not-exists":
        return lambda v: not _present(v)
    if operator == "matches-string":
        words = [str(v).lower() for v in as_list(values)]
        require_all = bool(words) and words[0] == "&&"
        if require_all:
            words = words[1:]

        def matches(v: Any) -> bool:
            texts = [str(x).lower() for x in as_list(v)]
            hits = [any(w in t for t in texts) for w in words]
            return bool(hits) and (all(hits) if require_all else any(hits))

        return matches
    if operator == "range-number":
        if not isinstance(values, Mapping):
            raise FilterError("range-number: values must be an object {lowerNumber, upperNumber}")
        lo = to_number(_first(values, "lowerNumber", "lower", "gte"))
        hi = to_number(_first(values, "upperNumber", "upper", "lte"))
        lo_ex = bool(values.get("lowerExcludeEquals", False))
        hi_ex = bool(values.get("upperExcludeEquals", False))
        return _range(lo, hi, lo_ex, hi_ex, to_number)
    if operator == "range-date":
        if not isinstance(values, Mapping):
            raise FilterError("range-date: values must be an object {lowerDate, upperDate}")
        lo_raw = _first(values, "lowerDate", "lower", "from", "gte")
        hi_raw = _first(values, "upperDate", "upper", "to", "lte")
        lo = to_timestamp(lo_raw)
        hi = to_timestamp(hi_raw, end_of_day=True)
        if (lo_raw is not None and lo is None) or (hi_raw is not None and hi is None):
            raise FilterError("range-date: bounds must be ISO 8601 dates or datetimes")
        lo_ex = bool(values.get("lowerExcludeEquals", False))
        hi_ex = bool(values.get("upperExcludeEquals", False))
        return _range(lo, hi, lo_ex, hi_ex, to_timestamp)
    if operator == "range-date-relative":
        if not isinstance(values, Mapping):
            raise FilterError("range-date-relative: values must be an object {lowerOffset, upperOffset, ...}")
        at = time.time() if now is None else now
        lo, hi = _relative_bound(values, "lower", at), _relative_bound(values, "upper", at)
        lo_ex = bool(values.get("lowerExcludeEquals", False))
        hi_ex = bool(values.get("upperExcludeEquals", False))
        return _range(lo, hi, lo_ex, hi_ex, to_timestamp)
    if operator in ("gt", "gte", "lt", "lte"):
        bound_raw = as_list(values)[0] if as_list(values) else None
        num = to_number(bound_raw)
        conv: Callable[[Any], float | None] = to_number
        if num is None:
            num = to_timestamp(bound_raw)
            conv = to_timestamp
        if num is None:
            raise FilterError(f"{operator}: needs one number or date value")
        bound = num
        cmp = {
            "gt": lambda x: x > bound,
            "gte": lambda x: x >= bound,
            "lt": lambda x: x < bound,
            "lte": lambda x: x <= bound,
        }[operator]
        return lambda v: any((n := conv(x)) is not None and cmp(n) for x in as_list(v))
    raise FilterError(f"Unknown operator '{operator}' (supported: {', '.join(OPERATORS)})")


def _range(
    lo: float | None, hi: float | None, lo_ex: bool, hi_ex: bool, conv: Callable[[Any], float | None]
) -> Callable[[Any], bool]:
    def ok(x: Any) -> bool:
        n = conv(x)
        if n is None:
            return False
        if lo is not None and (n < lo or (lo_ex and n == lo)):
            return False
        return not (hi is not None and (n > hi or (hi_ex and n == hi)))

    return lambda v: any(ok(x) for x in as_list(v))


# --- filter trees -----------------------------------------------------------------------------------
class FilterContext:
    """What a compiled audience filter may consult besides the contact itself."""

    def __init__(
        self,
        segment: Callable[[str, list[str] | None], Pred] | None = None,
        events_of: Callable[[Any], Sequence[Any]] | None = None,
        now: float | None = None,
    ) -> None:
        self.segment = segment
        self.events_of = events_of
        self.now = now


def _group(node: Mapping[str, Any], compile_child: Callable[[Any], Pred]) -> Pred:
    join = node.get("join", "and")
    if join not in ("and", "or"):
        raise FilterError(f"Unknown group join '{join}' (expected 'and' or 'or')")
    children = node.get("children") or []
    if not isinstance(children, list):
        raise FilterError("group: children must be a list")
    preds = [compile_child(c) for c in children]
    negate = bool(node.get("negate", False))
    if not preds:
        return lambda _x: not negate
    if join == "and":
        return (lambda x: not all(p(x) for p in preds)) if negate else (lambda x: all(p(x) for p in preds))
    return (lambda x: not any(p(x) for p in preds)) if negate else (lambda x: any(p(x) for p in preds))


def _condition_parts(node: Mapping[str, Any]) -> tuple[str, Any, Any]:
    key = node.get("key")
    if not isinstance(key, str) or not key:
        raise FilterError(f"{node.get('type')}: 'key' is required")
    operator = node.get("operator", "eq")
    return key, operator, node.get("values", node.get("value"))


def event_getter(key: str) -> tuple[Getter, str | None]:
    """Value getter of an event key; for ``<type>.<param>`` also the required event type."""
    simple: dict[str, Getter] = {
        "event-type": lambda e: e.type,
        "_event_type": lambda e: e.type,
        "created-at": lambda e: e.date,
        "_event_date": lambda e: e.date,
        "event-date": lambda e: e.date,
        "received-at": lambda e: e.received_at,
        "user-id": lambda e: e.user_id,
        "_user_id": lambda e: e.user_id,
        "event-id": lambda e: e.event_id,
        "_event_id": lambda e: e.event_id,
        "datasource": lambda e: e.ds,
    }
    if key in simple:
        return simple[key], None
    if "." in key:
        etype, _, param = key.partition(".")
        return (lambda e: e.params.get(param)), etype
    raise FilterError(f"Unknown event filter key '{key}'")


def _compile_tree(root: Any, groups: tuple[str, ...], leaf: Callable[[Mapping[str, Any], Any], Pred]) -> Pred:
    """Predicate for a filter tree: nodes of a type in ``groups`` combine their children, the
    others are conditions that ``leaf(node, type)`` compiles. No ``root`` matches everything."""
    if root is None:
        return lambda _x: True
    if not isinstance(root, Mapping):
        raise FilterError("root must be an object")

    def comp(node: Any) -> Pred:
        if not isinstance(node, Mapping):
            raise FilterError("filter nodes must be objects")
        t = node.get("type")
        if t in groups:
            return _group(node, comp)
        return leaf(node, t)

    return comp(root)


def compile_event_filter(root: Any, now: float | None = None) -> Pred:
    """Predicate over stored events for an event query filter ``root`` (``now``: the clock)."""

    def condition(node: Mapping[str, Any], t: Any) -> Pred:
        if t in ("event_condition", "attribute_condition", "event_attribute_condition"):
            key, operator, values = _condition_parts(node)
            getter, etype = event_getter(key)
            test = value_predicate(operator, values, now)
            if etype is not None:
                return lambda e: e.type == etype and test(getter(e))
            return lambda e: test(getter(e))
        raise FilterError(f"Unknown condition type '{t}' in an event filter")

    return _compile_tree(root, ("group", "group_event"), condition)


def audience_getter(key: str) -> Getter:
    if key == "_datasources":
        return lambda c: list(c.datasources)
    if key == "_ds_contact_ids":
        return lambda c: c.ds_contact_ids
    if key in ("audience-id", "id", "_audience_id"):
        return lambda c: c.id
    return lambda c: c.attrs.get(key)


def compile_audience_filter(root: Any, ctx: FilterContext | None = None) -> Pred:
    """Predicate over audience contacts for an audience query filter ``root``."""
    fctx = ctx or FilterContext()

    def condition(node: Mapping[str, Any], t: Any) -> Pred:
        if t == "attribute_condition":
            key, operator, values = _condition_parts(node)
            getter = audience_getter(key)
            test = value_predicate(operator, values, fctx.now)
            return lambda c: test(getter(c))
        if t == "segment_condition":
            key, operator, values = _condition_parts(node)
            if fctx.segment is None:
                raise FilterError("segment_condition is not available here")
            params = [str(v) for v in as_list(values)] or None
            if operator in ("in", "eq", "is", "member"):
                return fctx.segment(key, params)
            if operator in ("not-in", "neq", "not-member"):
                inner = fctx.segment(key, params)
                return lambda c: not inner(c)
            raise FilterError(f"Unknown operator '{operator}' for segment_condition (use 'in' or 'not-in')")
        if t in ("event_condition", "group_event"):
            if fctx.events_of is None:
                raise FilterError(f"{t} is not available here")
            event_pred = compile_event_filter(
                node if t == "group_event" else dict(node, type="event_condition"), fctx.now
            )
            events_of = fctx.events_of
            return lambda c: any(event_pred(e) for e in events_of(c))
        raise FilterError(f"Unknown condition type '{t}'")

    return _compile_tree(root, ("group",), condition)


# --- sorting --------------------------------------------------------------------------------------------
def sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return (3, "")
    if isinstance(value, (bool, int, float)):
        return (0, float(value))
    if isinstance(value, str):
        ts = to_timestamp(value) if len(value) >= 10 and value[:4].isdigit() and value[4:5] == "-" else None
        return (1, ts) if ts is not None else (2, value)
    return (2, str(value))


def sort_items(items: list[T], getter: Callable[[T], Any], ascending: bool) -> list[T]:
    present = [i for i in items if getter(i) is not None]
    missing = [i for i in items if getter(i) is None]
    present.sort(key=lambda i: sort_key(getter(i)), reverse=not ascending)
    return present + missing


# --- cursors ----------------------------------------------------------------------------------------------
def encode_cursor(snapshot_id: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{snapshot_id}:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        sid, _, offset = raw.partition(":")
        n = int(offset)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise FilterError("Invalid cursor") from exc
    if not sid or n < 0:
        raise FilterError("Invalid cursor")
    return sid, n


def parse_limit(value: Any, *, default: int, maximum: int, name: str = "limit") -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise FilterError(f"{name} must be a positive integer")
    try:
        n = int(value)
    except ValueError as exc:
        raise FilterError(f"{name} must be a positive integer") from exc
    if n < 1:
        raise FilterError(f"{name} must be a positive integer")
    return min(n, maximum)


# --- index Query Filter (``_start``, ``_limit``, ``_sort``, ``field_op=value``, ``_q``) --------------------
INDEX_OPS = ("eq", "neq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "like", "contains")
RESERVED_QUERY = frozenset({"_start", "_limit", "_sort", "_q", "_group", "_sync", "_dryRun", "parameter"})


def _field(item: Mapping[str, Any], path: str) -> Any:
    cur: Any = item
    for part in path.split("*"):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def _index_pred(field_name: str, op: str, value: Any) -> Callable[[Mapping[str, Any]], bool]:
    if op in ("in", "nin"):
        raw = value.split(",") if isinstance(value, str) else as_list(value)
        # n8n's default SMS filter nests one value in an array (["sent", ["enqueued"]]): flatten
        wanted = {canon(x) for v in raw for x in (as_list(v) if isinstance(v, list) else [v])}
        if op == "in":
            return lambda it: any(canon(x) in wanted for x in as_list(_field(it, field_name)))
        return lambda it: not any(canon(x) in wanted for x in as_list(_field(it, field_name)))
    if op in ("eq", "neq", "ne"):
        target = canon(value)
        if op == "eq":
            return lambda it: any(canon(x) == target for x in as_list(_field(it, field_name)))
        return lambda it: not any(canon(x) == target for x in as_list(_field(it, field_name)))
    if op in ("like", "contains"):
        needle = str(value).strip("%").lower()
        return lambda it: any(needle in str(x).lower() for x in as_list(_field(it, field_name)))
    test = value_predicate(op, [value])
    return lambda it: test(_field(it, field_name))


def index_query(
    items: Sequence[Mapping[str, Any]], query: Mapping[str, list[str]]
) -> tuple[list[Any], dict[str, int]]:
    """Apply a Query Filter to an index listing; return ``(page, {count, start, limit})``."""
    preds: list[Callable[[Mapping[str, Any]], bool]] = []
    sort_spec: list[tuple[str, bool]] = []
    start_raw = query.get("_start", [None])[-1]
    limit_raw = query.get("_limit", [None])[-1]
    if "_q" in query:
        try:
            q = orjson.loads(query["_q"][-1])
        except orjson.JSONDecodeError as exc:
            raise FilterError("_q must be JSON") from exc
        if not isinstance(q, Mapping):
            raise FilterError("_q must be a JSON object")
        for f in q.get("filter") or []:
            if not isinstance(f, Mapping) or "field" not in f:
                raise FilterError("_q.filter entries need 'field', 'operator', 'value'")
            op = str(f.get("operator", "eq"))
            if op not in INDEX_OPS:
                raise FilterError(f"Unknown operator '{op}' in _q")
            preds.append(_index_pred(str(f["field"]), op, f.get("value")))
        paging = q.get("paging") or {}
        if isinstance(paging, Mapping):
            start_raw = paging.get("start", start_raw)
            limit_raw = paging.get("limit", limit_raw)
        for s in q.get("sort") or []:
            if isinstance(s, list) and s:
                sort_spec.append((str(s[0]), str(s[1] if len(s) > 1 else "asc").lower() != "desc"))
    if (start_raw is None) != (limit_raw is None):
        raise FilterError("_start and _limit must both be set or both omitted")
    for name, values in query.items():
        if name in RESERVED_QUERY or name.startswith("_"):
            continue
        field_name, op = name, "eq"
        head, sep, tail = name.rpartition("_")
        if sep and tail in INDEX_OPS and head:
            field_name, op = head, tail
        for v in values:
            preds.append(_index_pred(field_name, op, v))
    if "_sort" in query:
        for part in query["_sort"][-1].split(","):
            part = part.strip()
            if not part:
                continue
            asc = True
            if part.endswith(":-"):
                part, asc = part[:-2], False
            elif part.endswith(":+"):
                part = part[:-2]
            sort_spec.append((part, asc))
    rows = [it for it in items if all(p(it) for p in preds)]
    for name, asc in reversed(sort_spec):
        rows = sort_items(rows, lambda it, n=name: _field(it, n), asc)  # type: ignore[misc]
    total = len(rows)
    if start_raw is None:
        return rows, {"count": total, "start": 0, "limit": total}
    try:
        start, limit = int(start_raw), int(limit_raw)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise FilterError("_start and _limit must be integers") from exc
    if start < 0 or limit < 1:
        raise FilterError("_start must be >= 0 and _limit >= 1")
    return rows[start : start + limit], {"count": total, "start": start, "limit": limit}
