"""Turn lists of JSON entities into Arrow arrays of a fixed type, without crashing on bad data.

Each column is built from the page's list of dicts with one list comprehension and one
``pyarrow.array`` call (the fast path). Only when that fails does the column fall back to a
per-value coercion: safe coercions are applied (``"12.5"`` -> 12.5 for a number, ``"1"`` ->
true for a boolean, a scalar -> a one-element list for a multi-value attribute, a number ->
its text for a string...), and a value that cannot be represented becomes null and is
counted in :class:`InvalidValues` (and the first few are logged).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .schema import ExportSchema

log = logging.getLogger(__name__)

_INVALID = object()  # marker returned by a coercer for a value that does not fit
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError,
                 ValueError)
_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off", ""}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LIST_OR_NONE = frozenset({list, type(None)})


class InvalidValues:
    """Thread-safe count of values that did not fit their column (exported as null)."""

    def __init__(self, log_first: int = 5) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self._log_first = log_first

    def add(self, column: str, value: Any) -> None:
        with self._lock:
            self.counts[column] += 1
            n = self.counts[column]
        if n <= self._log_first:
            text = repr(value)
            log.warning("column %r: value %s does not fit its type; exported as null", column,
                        text if len(text) <= 80 else text[:77] + "...")
            if n == self._log_first:
                log.warning("column %r: further invalid values are counted, not logged", column)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


# --- per-value coercers: return the coerced value, None, or _INVALID ------------------------

def _to_str(v: Any) -> Any:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if isinstance(v, float) else str(v)
    if isinstance(v, (dict, list, tuple)):
        try:
            return orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode()
        except (TypeError, orjson.JSONEncodeError):
            return _INVALID
    return str(v)


def _to_float(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, bool):
        return _INVALID
    if isinstance(v, (int, float)):
        try:
            return float(v)
        except OverflowError:
            return _INVALID
    if isinstance(v, str):
        text = v.strip()
        if not text:
            return None
        try:
            f = float(text.replace(",", ".") if text.count(",") == 1 and "." not in text else text)
        except ValueError:
            return _INVALID
        return f if math.isfinite(f) else _INVALID
    return _INVALID


def _to_int(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, bool):
        return _INVALID
    if isinstance(v, int):
        return v if -(2**63) <= v < 2**63 else _INVALID
    f = _to_float(v)
    if f is None or f is _INVALID:
        return f
    if not float(f).is_integer():
        return _INVALID
    return _to_int(int(f))


def _to_bool(v: Any) -> Any:
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        text = v.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return None if text == "" else False
    return _INVALID


def _parse_datetime(v: Any) -> Any:
    """A timezone-aware datetime (naive values are taken as UTC), or _INVALID."""
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        return v if v.tzinfo else v.replace(tzinfo=dt.UTC)
    if isinstance(v, dt.date):
        return dt.datetime(v.year, v.month, v.day, tzinfo=dt.UTC)
    if isinstance(v, bool):
        return _INVALID
    if isinstance(v, (int, float)):
        if not math.isfinite(v):
            return _INVALID
        seconds = v / 1000.0 if abs(v) >= 100_000_000_000 else float(v)  # epoch ms vs seconds
        try:
            return _EPOCH + dt.timedelta(seconds=seconds)
        except OverflowError:
            return _INVALID
    if isinstance(v, str):
        text = v.strip()
        if not text:
            return None
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            return _INVALID
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return _INVALID


def _to_timestamp(v: Any) -> Any:
    parsed = _parse_datetime(v)
    if parsed is None or parsed is _INVALID:
        return parsed
    try:
        parsed = parsed.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        return _INVALID
    return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)


def _to_date(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    if isinstance(v, str):
        text = v.strip()
        if not text:
            return None
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    parsed = _parse_datetime(v)
    if parsed is None or parsed is _INVALID:
        return parsed
    return parsed.astimezone(dt.UTC).date()


def _coercer(t: pa.DataType) -> Callable[[Any], Any]:
    if pa.types.is_string(t):
        return _to_str
    if pa.types.is_floating(t):
        return _to_float
    if pa.types.is_integer(t):
        return _to_int
    if pa.types.is_boolean(t):
        return _to_bool
    if pa.types.is_date(t):
        return _to_date
    if pa.types.is_timestamp(t):
        return _to_timestamp
    return _to_str


# --- whole columns ------------------------------------------------------------------------

def _slow(values: Sequence[Any], t: pa.DataType, column: str, invalid: InvalidValues) -> pa.Array:
    coerce = _coercer(t)
    out: list[Any] = []
    append = out.append
    for v in values:
        c = coerce(v)
        if c is _INVALID:
            invalid.add(column, v)
            c = None
        append(c)
    return pa.array(out, type=t)


def _scalar_array(values: Sequence[Any], t: pa.DataType, column: str, invalid: InvalidValues) -> pa.Array:
    try:
        if pa.types.is_date(t) or pa.types.is_timestamp(t):
            # ISO strings parse in C++; anything else (numbers, odd formats) takes the slow path.
            return pc.cast(pa.array(values, type=pa.string()), t)
        if pa.types.is_floating(t):
            arr = pa.array(values, type=t)
            if bool not in set(map(type, values)):  # pyarrow would take True as 1.0
                return arr
        else:
            return pa.array(values, type=t)
    except _ARROW_ERRORS:
        pass
    return _slow(values, t, column, invalid)


def _list_array(values: Sequence[Any], t: pa.ListType, column: str, invalid: InvalidValues) -> pa.Array:
    inner = t.value_type
    if (pa.types.is_string(inner) or pa.types.is_floating(inner) or pa.types.is_boolean(inner)
            or pa.types.is_integer(inner)) and set(map(type, values)) <= _LIST_OR_NONE:
        # (pyarrow would split a bare string into characters, hence the type check)
        try:
            return pa.array(values, type=t)
        except _ARROW_ERRORS:
            pass
    # Normalise every cell to a list (a scalar becomes a one-element list), then convert the
    # flattened values as one column and rebuild the offsets.
    offsets = [0]
    flat: list[Any] = []
    mask: list[bool] = []
    for v in values:
        if v is None:
            mask.append(True)
        else:
            mask.append(False)
            if isinstance(v, (list, tuple)):
                flat.extend(v)
            else:
                flat.append(v)
        offsets.append(len(flat))
    items = _scalar_array(flat, inner, column, invalid)
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), items, type=t,
                                    mask=pa.array(mask, type=pa.bool_()))


def to_array(values: Sequence[Any], t: pa.DataType, column: str, invalid: InvalidValues) -> pa.Array:
    """Convert ``values`` (JSON-decoded) to an Arrow array of type ``t``; never raises on bad data."""
    if pa.types.is_list(t):
        return _list_array(values, t, column, invalid)
    return _scalar_array(values, t, column, invalid)


def _json_texts(values: Sequence[Any], column: str, invalid: InvalidValues) -> list[str | None]:
    out: list[str | None] = []
    dumps = orjson.dumps
    opt = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
    for v in values:
        if v is None:
            out.append(None)
            continue
        try:
            out.append(dumps(v, option=opt).decode())
        except (TypeError, orjson.JSONEncodeError):
            invalid.add(column, v)
            out.append(None)
    return out


class BatchBuilder:
    """Collects entities column by column, then builds one RecordBatch with ``schema``.

    :meth:`add` copies each page's values out of its dicts (one dict lookup per cell, a list
    comprehension per column), so the page's dicts can be freed at once: holding thousands
    of decoded dicts across pages made the garbage collector cost as much as the
    conversion. :meth:`build` makes one Arrow array per column (the fast paths above).
    """

    def __init__(self, schema: ExportSchema, invalid: InvalidValues) -> None:
        self.schema = schema
        self.invalid = invalid
        self._columns = schema.columns
        self._values: list[list[Any]] = [[] for _ in self._columns]
        self.rows = 0

    def add(self, entities: Sequence[Any]) -> None:
        rows = [e for e in entities if isinstance(e, dict)]
        if not rows:
            return
        attrs: list[dict[str, Any]] | None = None
        for col, acc in zip(self._columns, self._values):
            key = col.key
            if col.where == "attr":
                if attrs is None:
                    attrs = [a if isinstance(a := e.get("attributesData"), dict) else {} for e in rows]
                acc.extend([a.get(key) for a in attrs])
            elif col.name == "_event_parameters":
                acc.extend(_json_texts([e.get(key) for e in rows], col.name, self.invalid))
            else:
                acc.extend([e.get(key) for e in rows])
        self.rows += len(rows)

    def build(self) -> pa.RecordBatch:
        arrays = [to_array(values, col.type, col.name, self.invalid)
                  for col, values in zip(self._columns, self._values)]
        self._values = [[] for _ in self._columns]
        self.rows = 0
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema.arrow)


def entities_to_batch(entities: Sequence[Any], schema: ExportSchema,
                      invalid: InvalidValues) -> pa.RecordBatch:
    """One RecordBatch with ``schema`` from a list of audience contacts or events
    (entities that are not JSON objects are skipped)."""
    builder = BatchBuilder(schema, invalid)
    builder.add(entities)
    return builder.build()
