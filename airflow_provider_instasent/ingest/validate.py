"""The fast path: vectorised validation and coercion of Arrow record batches.

Every check runs on whole columns with ``pyarrow.compute``; Python touches only the rows that
fail (to format their message). A batch comes out as:

* **normalised columns**, one per API key, already in the form the API takes (strings,
  numbers, ``"1"``/``"0"`` booleans, ``YYYY-MM-DD`` dates, ``YYYY-MM-DDTHH:MM:SS.sssZ``
  timestamps, lists for multi-valued fields), ready for :mod:`.encode`;
* **every error of every row** as ``(row, field, reason)``: a row with three problems gets
  three entries, not one.

Problems that concern a whole column rather than some rows (an unknown column or event type,
a column of a type that cannot be coerced, naive timestamps without ``assume_timezone``)
raise :class:`~.errors.IngestSchemaError` naming the column, before anything of that batch
is sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..datatypes import FALSE_STRINGS, TRUE_STRINGS
from .errors import IngestSchemaError
from .specs import (
    EVENT_DATE,
    EVENT_ID,
    EVENT_PARAMETERS,
    EVENT_TYPE,
    MAX_ID_LENGTH,
    USER_DATA,
    USER_ID,
    EventTypeSpec,
    FieldSpec,
    Kind,
    ProjectSpecs,
)

log = logging.getLogger(__name__)

#: Half-width of the automation window, in milliseconds (±1 hour around reception).
WINDOW_MS = 3_600_000

_ISO_WITH_TZ = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|z|[+-]\d{2}(:?\d{2})?)$"
_ISO_NAIVE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?$"
_DATE = r"^\d{4}-\d{2}-\d{2}$"
_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_TRUE = sorted(TRUE_STRINGS)
_FALSE = sorted(FALSE_STRINGS)

ID_SPEC = FieldSpec(USER_ID, "string", "string", required=True, max_length=MAX_ID_LENGTH)
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_PHONE = r"^\+?\d{6,15}$"


@dataclass(frozen=True)
class CoerceOptions:
    """Options of the coercions.

    ``assume_timezone``: the IANA zone (or ``"UTC"``) of naive timestamps and of date-times
    without an offset; without it those are an error. ``now_ms``: the clock for the
    automation window (milliseconds since the epoch).
    """

    assume_timezone: str | None = None
    unknown_columns: str = "error"
    now_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))


# ---------------------------------------------------------------------------------------------
# errors of one batch
# ---------------------------------------------------------------------------------------------
class RowErrors:
    """Every error of one batch, column-wise: (row indices, field, reason or reasons)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.parts: list[tuple[np.ndarray, str, str | list[str]]] = []

    def add(self, rows: np.ndarray | pa.Array | Sequence[int], field_name: str, reason: str | list[str]) -> None:
        idx = _as_indices(rows)
        if len(idx):
            if isinstance(reason, list) and len(reason) != len(idx):
                raise AssertionError("one reason per row")
            self.parts.append((idx, field_name, reason))

    def add_mask(self, mask: pa.Array | np.ndarray, field_name: str, reason: str | Callable[[np.ndarray], list[str]]
                 ) -> np.ndarray:
        """Record ``reason`` for every row where ``mask`` is true; returns the row indices."""
        idx = _mask_indices(mask)
        if len(idx):
            self.parts.append((idx, field_name, reason(idx) if callable(reason) else reason))
        return idx

    def extend(self, other: RowErrors, rows: np.ndarray) -> None:
        """Add the errors of a sub-batch whose row ``i`` is row ``rows[i]`` of this batch."""
        for idx, name, reason in other.parts:
            self.parts.append((rows[idx], name, reason))

    def __len__(self) -> int:
        return sum(len(idx) for idx, _, _ in self.parts)

    def bad_mask(self) -> np.ndarray:
        mask = np.zeros(self.n, dtype=bool)
        for idx, _, _ in self.parts:
            mask[idx] = True
        return mask

    def records(self) -> tuple[np.ndarray, list[str], list[str]]:
        """``(rows, fields, reasons)``, ordered by row then by the order the checks ran."""
        if not self.parts:
            return np.zeros(0, dtype=np.int64), [], []
        rows = np.concatenate([idx for idx, _, _ in self.parts])
        fields: list[str] = []
        reasons: list[str] = []
        for idx, name, reason in self.parts:
            fields.extend([name] * len(idx))
            reasons.extend(reason if isinstance(reason, list) else [reason] * len(idx))
        order = np.argsort(rows, kind="stable")
        return rows[order], [fields[i] for i in order], [reasons[i] for i in order]


def _as_indices(rows: np.ndarray | pa.Array | Sequence[int]) -> np.ndarray:
    if isinstance(rows, pa.Array):
        return rows.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return np.asarray(rows, dtype=np.int64)


def _mask_indices(mask: pa.Array | np.ndarray) -> np.ndarray:
    if isinstance(mask, np.ndarray):
        return np.flatnonzero(mask)
    if mask.null_count:
        mask = pc.fill_null(mask, False)
    return pc.indices_nonzero(mask).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _values_at(arr: pa.Array, idx: np.ndarray) -> list[Any]:
    return arr.take(pa.array(idx, pa.int64())).to_pylist()


# ---------------------------------------------------------------------------------------------
# column coercions
# ---------------------------------------------------------------------------------------------
def _plain(arr: pa.Array) -> pa.Array:
    """Decode dictionaries, views and extension types into plain arrays."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if isinstance(t, pa.ExtensionType):
        arr = arr.storage
        t = arr.type
    if pa.types.is_string_view(t) or pa.types.is_large_string(t):
        try:  # one string type everywhere (compute kernels do not mix string and large_string)
            arr = arr.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowCapacityError):  # over 2 GiB of text in one batch
            arr = arr.cast(pa.large_string())
    elif pa.types.is_binary_view(t):
        arr = arr.cast(pa.large_binary())
    return arr


def _is_str(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) \
        or pa.types.is_list_view(t) or pa.types.is_large_list_view(t)


def _nan_to_null(arr: pa.Array) -> pa.Array:
    if pa.types.is_floating(arr.type) and len(arr):
        nan = pc.is_nan(arr)
        if pc.any(nan).as_py():
            arr = pc.if_else(nan, pa.scalar(None, arr.type), arr)
    return arr


def _type_error(name: str, arr_type: pa.DataType, spec: FieldSpec, hint: str = "") -> IngestSchemaError:
    what = f"{spec.raw_type or spec.data_type}"
    return IngestSchemaError(
        f"column {name!r} has Arrow type {arr_type} which cannot be sent as {what!r}" + (f"; {hint}" if hint else "")
    )


class Coercer:
    """Coerces one column to the API's form for a field spec, recording row errors."""

    def __init__(self, options: CoerceOptions) -> None:
        self.options = options

    # -- dispatch -------------------------------------------------------------------------------
    def column(self, arr: pa.Array, spec: FieldSpec, name: str, errors: RowErrors) -> pa.Array:
        arr = _plain(arr)
        if pa.types.is_null(arr.type):
            return arr
        if spec.multi:
            return self._multi(arr, spec, name, errors)
        if _is_list(arr.type):
            raise IngestSchemaError(
                f"column {name!r} holds lists, but {spec.name!r} takes a single value "
                f"(multi-valued fields have multivalue > 1 in the specs)"
            )
        return self.scalar(arr, spec, name, errors)

    def _multi(self, arr: pa.Array, spec: FieldSpec, name: str, errors: RowErrors) -> pa.Array:
        if not _is_list(arr.type):
            values = self.scalar(arr, spec, name, errors)
            offsets = pa.array(np.arange(len(arr) + 1, dtype=np.int32))
            return pa.ListArray.from_arrays(offsets, values, mask=arr.is_null())
        if pa.types.is_list_view(arr.type) or pa.types.is_large_list_view(arr.type) \
                or pa.types.is_fixed_size_list(arr.type):
            arr = arr.cast(pa.list_(arr.type.value_type))
        lengths = pc.list_value_length(arr)
        too_many = pc.greater(lengths, spec.multi)
        errors.add_mask(too_many, name, lambda idx: [
            f"more than {spec.multi} values ({n})" for n in _values_at(lengths, idx)])
        flat = arr.values.slice(arr.offsets[0].as_py(), arr.offsets[-1].as_py() - arr.offsets[0].as_py())
        parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
        sub = RowErrors(len(flat))
        values = self.scalar(flat, spec, name, sub) if not pa.types.is_null(flat.type) else flat
        null_items = _mask_indices(pc.is_null(values)) if values.null_count else np.zeros(0, np.int64)
        if len(null_items):
            sub.add(null_items, name, "null value inside a multi-valued list")
        errors.extend(sub, parents)
        offsets = pc.subtract(arr.offsets, arr.offsets[0])
        return pa.ListArray.from_arrays(offsets, values, mask=arr.is_null())

    def scalar(self, arr: pa.Array, spec: FieldSpec, name: str, errors: RowErrors) -> pa.Array:
        kind = spec.data_type
        if kind == "string":
            out = self.string(arr, spec, name, errors)
        elif kind in ("email", "phone"):
            out = self.contact_point(arr, spec, name, errors)
        elif kind in ("number", "integer"):
            out = self.number(arr, spec, name, errors)
        elif kind == "bool":
            out = self.boolean(arr, spec, name, errors)
        elif kind == "date":
            out = self.date(arr, spec, name, errors)
        elif kind == "datetime":
            out, _ = self.datetime(arr, spec, name, errors)
        else:
            out = self.any(arr, spec, name, errors)
        if spec.max_length and _is_str(out.type):
            lengths = pc.utf8_length(out)
            errors.add_mask(pc.greater(lengths, spec.max_length), name, lambda idx: [
                f"longer than maxLength {spec.max_length} ({n} characters)" for n in _values_at(lengths, idx)])
        return out

    # -- per type -------------------------------------------------------------------------------
    def string(self, arr: pa.Array, spec: FieldSpec, name: str, errors: RowErrors) -> pa.Array:
        t = arr.type
        if _is_str(t):
            return arr
        if pa.types.is_integer(t):
            return arr.cast(pa.string())
        if pa.types.is_floating(t):
            arr = _nan_to_null(arr)
            finite = pc.is_finite(arr)
            errors.add_mask(pc.invert(finite), name, lambda idx: [
                f"not a finite number ({v})" for v in _values_at(arr, idx)])
            integral = pc.and_(finite, pc.equal(pc.floor(arr), arr))
            as_int = pc.cast(pc.if_else(integral, arr, None), pa.int64(), safe=False).cast(pa.string())
            return pc.if_else(integral, as_int, arr.cast(pa.string()))
        if pa.types.is_decimal(t):
            return arr.cast(pa.string())
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            return self.datetime(arr, spec, name, errors)[0] if pa.types.is_timestamp(t) else self.date(
                arr, spec, name, errors)
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            try:
                return arr.cast(pa.large_string())
            except pa.ArrowInvalid:  # some values are not UTF-8: reject those rows only
                values = arr.to_pylist()
                text: list[str | None] = []
                bad: list[int] = []
                for i, v in enumerate(values):
                    try:
                        text.append(None if v is None else v.decode("utf-8"))
                    except UnicodeDecodeError:
                        text.append(None)
                        bad.append(i)
                errors.add(bad, name, [f"not UTF-8 text: {_show(values[i])}" for i in bad])
                return pa.array(text, pa.large_string())
        raise _type_error(name, t, spec)

    def contact_point(self, arr: pa.Array, spec: FieldSpec, name: str, errors: RowErrors) -> pa.Array:
        """An email (``x@y.z`` shape) or a phone number (6 to 15 digits, an optional leading
        ``+`` or ``00``, separators `` -().`` ignored); the value is sent as given."""
        out = self.string(arr, spec, name, errors)
        if spec.data_type == "email":
            ok = pc.match_substring_regex(pc.utf8_trim_whitespace(out), _EMAIL)
            what = "not an email address"
        else:
            digits = pc.replace_substring_regex(pc.utf8_trim_whitespace(out), r"[ \-().\t/]", "")
            digits = pc.replace_substring_regex(digits, r"^00", "+")
            ok = pc.match_substring_regex(digits, _PHONE)
            what = "not a phone number (6 to 15 digits, optional leading +)"
        errors.add_mask(pc.invert(ok), name, lambda idx: [f"{what}: {_show(v)}" for v in _values_at(out, idx)])
        return out

    def number(self, arr: pa.Array, spec: FieldSpec, name: str, errors: RowErrors) -> pa.Array:
        t = arr.type
        if pa.types.is_integer(t):
            return arr if t == pa.int64() else arr.cast(pa.int64(), safe=False) if not pa.types.is_uint64(t) \
                else arr.cast(pa.float64())
        if pa.types.is_decimal(t):
            arr = arr.cast(pa.float64(), safe=False)
            t = arr.type
        if pa.types.is_floating(t):
            arr = _nan_to_null(arr) if t == pa.float64() else _nan_to_null(arr.cast(pa.float64()))
            bad = pc.invert(pc.is_finite(arr))
            idx = errors.add_mask(bad, name, lambda idx: [f"not a finite number ({v})" for v in _values_at(arr, idx)])
            if spec.data_type == "integer":
                frac = pc.not_equal(pc.floor(arr), arr)
                errors.add_mask(frac, name, lambda i: [f"not an integer ({v})" for v in _values_at(arr, i)])
                if len(idx) == 0:
                    ok = pc.fill_null(pc.invert(frac), True)
                    if pc.all(ok).as_py():
                        return arr.cast(pa.int64(), safe=False)
            return arr
        if _is_str(t):
            ok = pc.match_substring_regex(arr, _NUMBER)
            bad = pc.invert(ok)
            errors.add_mask(bad, name, lambda idx: [f"not a number: {_show(v)}" for v in _values_at(arr, idx)])
            parsed = pc.cast(pc.utf8_trim_whitespace(pc.if_else(ok, arr, None)), pa.float64())
            fake = FieldSpec(spec.name, spec.data_type)
            return self.number(parsed, fake, name, errors)
        if pa.types.is_boolean(t):
            raise _type_error(name, t, spec, "booleans are not numbers; cast the column first")
        raise _type_error(name, t, spec)

    def boolean(self, arr: pa.Array, spec: FieldSpec, name: str, errors: RowErrors) -> pa.Array:
        t = arr.type
        if pa.types.is_boolean(t):
            return pc.if_else(arr, "1", "0")
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            arr = _nan_to_null(arr.cast(pa.float64()))
            one, zero = pc.equal(arr, 1), pc.equal(arr, 0)
            bad = pc.invert(pc.or_(one, zero))
            errors.add_mask(bad, name, lambda idx: [
                f"not a boolean (1/0/true/false): {_show(v)}" for v in _values_at(arr, idx)])
            return pc.if_else(one, "1", pc.if_else(zero, "0", pa.scalar(None, pa.string())))
        if _is_str(t):
            low = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
            yes = pc.is_in(low, value_set=pa.array(_TRUE))
            no = pc.is_in(low, value_set=pa.array(_FALSE))
            bad = pc.and_(pc.is_valid(arr), pc.invert(pc.or_(yes, no)))
            errors.add_mask(bad, name, lambda idx: [
                f"not a boolean (1/0/true/false): {_show(v)}" for v in _values_at(arr, idx)])
            return pc.if_else(yes, "1", pc.if_else(no, "0", pa.scalar(None, pa.string())))
        raise _type_error(name, t, spec)

    def date(self, arr: pa.Array, spec: FieldSpec, name: str, errors: RowErrors) -> pa.Array:
        t = arr.type
        if pa.types.is_date(t):
            return arr.cast(pa.date32()).cast(pa.string())
        if pa.types.is_timestamp(t):  # the wall-clock date (in the column's own zone when it has one)
            return arr.cast(pa.date32()).cast(pa.string())
        if _is_str(t):
            shaped = pc.match_substring_regex(arr, _DATE)
            parsed = pc.strptime(pc.if_else(shaped, arr, None), "%Y-%m-%d", "s", error_is_null=True)
            real = pc.equal(pc.strftime(parsed, "%Y-%m-%d"), arr)  # 2024-02-30 parses as 03-01
            ok = pc.fill_null(real, False)
            bad = pc.and_(pc.is_valid(arr), pc.invert(ok))
            errors.add_mask(bad, name, lambda idx: [
                f"not a date (YYYY-MM-DD): {_show(v)}" for v in _values_at(arr, idx)])
            return arr
        raise _type_error(name, t, spec)

    def datetime(self, arr: pa.Array, spec: FieldSpec, name: str, errors: RowErrors) -> tuple[pa.Array, pa.Array]:
        """``YYYY-MM-DDTHH:MM:SS.sssZ`` strings, and the same instants as ms timestamps (UTC)."""
        ts = self.to_utc_ms(arr, spec, name, errors)
        # the naive cast gives "YYYY-MM-DD HH:MM:SS.sss" (far faster than strftime or a tz-aware cast;
        # docs/performance.md)
        text = pc.replace_substring(ts.cast(pa.timestamp("ms")).cast(pa.string()), " ", "T", max_replacements=1)
        return pc.binary_join_element_wise(text, pa.scalar("Z"), ""), ts

    def to_utc_ms(self, arr: pa.Array, spec: FieldSpec, name: str, errors: RowErrors) -> pa.Array:
        t = arr.type
        zone = self.options.assume_timezone
        if pa.types.is_timestamp(t):
            if t.tz is None:
                if not zone:
                    raise IngestSchemaError(
                        f"column {name!r} holds naive timestamps (no time zone); pass assume_timezone= "
                        f"(e.g. 'UTC' or 'Europe/Madrid') or make the column time-zone aware"
                    )
                arr = pc.assume_timezone(arr, zone, ambiguous="earliest", nonexistent="latest")
            return pc.cast(arr, pa.timestamp("ms", "UTC"), safe=False)
        if pa.types.is_date(t):
            if not zone:
                raise IngestSchemaError(
                    f"column {name!r} holds dates but {spec.name!r} is a date-time; pass assume_timezone= "
                    f"to read them as midnight in that zone"
                )
            naive = arr.cast(pa.date32()).cast(pa.timestamp("ms"))
            return pc.cast(pc.assume_timezone(naive, zone, ambiguous="earliest", nonexistent="latest"),
                           pa.timestamp("ms", "UTC"))
        if _is_str(t):
            return self._parse_iso(arr, name, errors)
        raise _type_error(name, t, spec)

    def _parse_iso(self, arr: pa.Array, name: str, errors: RowErrors) -> pa.Array:
        zone = self.options.assume_timezone
        with_tz = pc.fill_null(pc.match_substring_regex(arr, _ISO_WITH_TZ), False)
        naive = pc.fill_null(pc.match_substring_regex(arr, _ISO_NAIVE), False) if zone else None
        result = pa.nulls(len(arr), pa.timestamp("ms", "UTC"))
        if pc.any(with_tz).as_py():
            normal = pc.replace_substring_regex(pc.if_else(with_tz, arr, None), r"[zZ]$", "+00:00")
            normal = pc.replace_substring(normal, " ", "T", max_replacements=1)
            # microseconds cover years 1..9999 (nanoseconds only 1677..2262); drop digits beyond them
            normal = pc.replace_substring_regex(normal, r"(\.\d{6})\d+", r"\1")
            parsed = _cast_each(normal, pa.timestamp("us", "UTC"))
            result = pc.if_else(with_tz, pc.cast(parsed, pa.timestamp("ms", "UTC"), safe=False), result)
        if naive is not None and pc.any(naive).as_py():
            text = pc.replace_substring(pc.if_else(naive, arr, None), " ", "T", max_replacements=1)
            text = pc.replace_substring_regex(text, r"(\.\d{6})\d+", r"\1")
            parsed = _cast_each(text, pa.timestamp("us"))
            local = pc.assume_timezone(parsed, zone, ambiguous="earliest", nonexistent="latest")
            result = pc.if_else(naive, pc.cast(local, pa.timestamp("ms", "UTC"), safe=False), result)
        bad = pc.and_(pc.is_valid(arr), pc.is_null(result))
        hint = "" if zone else " (or pass assume_timezone= for values without one)"
        errors.add_mask(bad, name, lambda idx: [
            f"not an ISO 8601 date-time with a time zone{hint}: {_show(v)}" for v in _values_at(arr, idx)])
        return result

    def any(self, arr: pa.Array, spec: FieldSpec, name: str, errors: RowErrors) -> pa.Array:
        t = arr.type
        if _is_str(t) or pa.types.is_integer(t):
            return arr
        if pa.types.is_floating(t) or pa.types.is_decimal(t):
            return self.number(arr, spec, name, errors)
        if pa.types.is_boolean(t):
            return self.boolean(arr, spec, name, errors)
        if pa.types.is_timestamp(t):
            return self.datetime(arr, spec, name, errors)[0]
        if pa.types.is_date(t):
            return self.date(arr, spec, name, errors)
        raise _type_error(name, t, spec)


def _cast_each(arr: pa.Array, to: pa.DataType) -> pa.Array:
    """Cast strings to timestamps; values that do not parse become null (not an exception)."""
    try:
        return pc.cast(arr, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        out: list[Any] = []
        for value in arr.to_pylist():
            if value is None:
                out.append(None)
                continue
            try:
                out.append(pc.cast(pa.array([value]), to)[0].value)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                out.append(None)
        return pa.array(out, pa.int64()).cast(to)


# ---------------------------------------------------------------------------------------------
# batch validation
# ---------------------------------------------------------------------------------------------
@dataclass
class Group:
    """Rows of one batch that share a shape (all contacts, or the events of one type).

    ``rows``: their indices in the batch (None: every row). ``top``: normalised top-level
    columns in output order; ``params`` / ``user_data``: normalised nested columns.
    ``in_window``: per row, whether the event would fire automations (events only).
    """

    n: int
    rows: np.ndarray | None
    top: dict[str, pa.Array]
    event_type: str | None = None
    params: dict[str, pa.Array] | None = None
    user_data: dict[str, pa.Array] | None = None
    in_window: np.ndarray | None = None


@dataclass
class Validated:
    """The outcome of one batch: its groups, every row error, and the valid-row mask."""

    n: int
    groups: list[Group]
    errors: RowErrors

    @property
    def valid(self) -> np.ndarray:
        return ~self.errors.bad_mask()


def _columns(batch: pa.RecordBatch | pa.Table) -> dict[str, pa.Array]:
    cols: dict[str, pa.Array] = {}
    for name, col in zip(batch.schema.names, batch.columns):
        cols[name] = _plain(col)
    return cols


def _struct_fields(arr: pa.Array, name: str) -> dict[str, pa.Array]:
    """The fields of a struct / map / JSON-text column as separate columns."""
    arr = _plain(arr)
    t = arr.type
    if pa.types.is_null(t):
        return {}
    if pa.types.is_map(t) or _is_str(t):
        values: list[Any] = []
        bad: list[int] = []
        for i, v in enumerate(arr.to_pylist()):
            if v is None:
                values.append(None)
            elif isinstance(v, str):
                try:
                    obj = orjson.loads(v)
                except orjson.JSONDecodeError:
                    obj = None
                if not isinstance(obj, dict):
                    bad.append(i)
                    obj = None
                values.append(obj)
            else:
                values.append(dict(v))
        if bad:
            raise IngestSchemaError(f"column {name!r}: row {bad[0]} is not a JSON object")
        if all(v is None for v in values):
            return {}
        arr = pa.array(values)
        t = arr.type
    if not pa.types.is_struct(t):
        raise IngestSchemaError(f"column {name!r} must be a struct/dict column (got {t})")
    out: dict[str, pa.Array] = {}
    parent_null = arr.is_null()
    for i in range(t.num_fields):
        child = pc.struct_field(arr, [i])
        if arr.null_count:
            child = pc.if_else(parent_null, pa.scalar(None, child.type), child)
        out[t.field(i).name] = child
    return out


class Validator:
    """Validates batches of one kind against the datasource specs.

    Args:
        specs: the loaded :class:`ProjectSpecs`.
        kind: ``"contacts"`` or ``"events"``.
        event_type: for a frame of one event type (otherwise an ``_event_type`` column).
        options: coercion options.
    """

    def __init__(self, specs: ProjectSpecs, kind: Kind, *, event_type: str | None = None,
                 options: CoerceOptions | None = None) -> None:
        self.specs = specs
        self.kind = kind
        self.event_type = event_type
        self.options = options or CoerceOptions()
        self.coerce = Coercer(self.options)
        self._warned: set[str] = set()
        if kind == "events" and event_type is not None:
            specs.event_type(event_type)  # unknown type: a clear error before reading anything

    def __call__(self, batch: pa.RecordBatch | pa.Table) -> Validated:
        cols = _columns(batch)
        n = batch.num_rows
        if self.kind == "contacts":
            return self._contacts(cols, n)
        return self._events(cols, n)

    # -- contacts ---------------------------------------------------------------------------------
    def _contact_columns(self, cols: Mapping[str, pa.Array], errors: RowErrors, prefix: str = "",
                         user_id_required: bool = True) -> dict[str, pa.Array]:
        attrs = self.specs.attributes
        unknown = [c for c in cols if c not in attrs and c != USER_ID]
        read_only = [c for c in cols if c in attrs and attrs[c].read_only and c != USER_ID]
        if read_only:
            raise IngestSchemaError(
                f"read-only attributes cannot be written: {', '.join(prefix + c for c in read_only)}")
        if unknown:
            self._unknown([prefix + c for c in unknown], "attributes",
                          sorted(u for u, s in attrs.items() if not s.read_only))
        out: dict[str, pa.Array] = {}
        if USER_ID in cols:
            out[USER_ID] = self._user_id(cols[USER_ID], prefix + USER_ID, errors, required=user_id_required)
        elif user_id_required:
            raise IngestSchemaError(f"contacts need a {USER_ID!r} column (got: {', '.join(cols) or 'none'})")
        send_unknown = self.options.unknown_columns == "send"
        for name, arr in cols.items():
            if name == USER_ID:
                continue
            spec = attrs.get(name)
            if spec is None:
                if not send_unknown:
                    continue
                spec = FieldSpec(name)
            out[name] = self.coerce.column(arr, spec, prefix + name, errors)
        return out

    def _contacts(self, cols: dict[str, pa.Array], n: int) -> Validated:
        errors = RowErrors(n)
        top = self._contact_columns(cols, errors)
        return Validated(n, [Group(n, None, top)], errors)

    def _user_id(self, arr: pa.Array, name: str, errors: RowErrors, *, required: bool = True) -> pa.Array:
        out = self.coerce.column(arr, ID_SPEC, name, errors)
        if required:
            if pa.types.is_null(out.type):
                missing = pa.array(np.ones(len(out), bool))
            else:
                blank = pc.equal(pc.fill_null(pc.utf8_length(pc.utf8_trim_whitespace(out)), 0), 0)
                missing = pc.or_(pc.is_null(out), blank)
            errors.add_mask(missing, name, "required (missing or empty)")
        return out

    def _unknown(self, names: list[str], what: str, known: list[str]) -> None:
        if self.options.unknown_columns == "send":
            fresh = [c for c in names if c not in self._warned]
            if fresh:
                self._warned.update(fresh)
                log.warning("sending columns the specs do not define, unchecked (unknown_columns='send'): %s",
                            ", ".join(fresh))
            return
        if self.options.unknown_columns == "ignore":
            fresh = [c for c in names if c not in self._warned]
            if fresh:
                self._warned.update(fresh)
                log.warning("ignoring columns that are not %s of the datasource: %s", what, ", ".join(fresh))
            return
        raise IngestSchemaError(
            f"unknown columns (not {what} of the datasource): {', '.join(names)}. "
            f"Known {what}: {', '.join(known) or 'none'}. Rename them with columns={{...}}, "
            f"map them to None to drop them, or pass unknown_columns='ignore' (drop) or 'send' (send unchecked)."
        )

    # -- events -----------------------------------------------------------------------------------
    def _split_event_columns(self, cols: dict[str, pa.Array]
                             ) -> tuple[dict[str, pa.Array], dict[str, pa.Array], dict[str, pa.Array]]:
        top: dict[str, pa.Array] = {}
        params: dict[str, pa.Array] = {}
        user: dict[str, pa.Array] = {}
        for name, arr in cols.items():
            if name == EVENT_PARAMETERS:
                for key, child in _struct_fields(arr, name).items():
                    if key in params:
                        raise IngestSchemaError(f"parameter {key!r} is given twice (column and {EVENT_PARAMETERS})")
                    params[key] = child
            elif name == USER_DATA:
                user.update(_struct_fields(arr, name))
            elif name.startswith(EVENT_PARAMETERS + "."):
                key = name[len(EVENT_PARAMETERS) + 1:]
                if key in params:
                    raise IngestSchemaError(f"parameter {key!r} is given twice")
                params[key] = arr
            elif name.startswith(USER_DATA + "."):
                user[name[len(USER_DATA) + 1:]] = arr
            elif name in (USER_ID, EVENT_ID, EVENT_TYPE, EVENT_DATE):
                top[name] = arr
            else:
                if name in params:
                    raise IngestSchemaError(f"parameter {name!r} is given twice (column and {EVENT_PARAMETERS})")
                params[name] = arr
        return top, params, user

    def _events(self, cols: dict[str, pa.Array], n: int) -> Validated:
        top, params, user = self._split_event_columns(cols)
        errors = RowErrors(n)
        if USER_ID not in top:
            raise IngestSchemaError(f"events need a {USER_ID!r} column (got: {', '.join(cols) or 'none'})")
        if self.event_type is not None:
            if EVENT_TYPE in top:
                raise IngestSchemaError(f"pass either event_type={self.event_type!r} or an {EVENT_TYPE!r} column, "
                                        f"not both")
            types = {self.event_type: None}
            type_col = None
        else:
            if EVENT_TYPE not in top:
                raise IngestSchemaError(f"events need event_type=... (one type per frame) or an {EVENT_TYPE!r} column")
            type_col = _plain(top.pop(EVENT_TYPE))
            if not _is_str(type_col.type) and not pa.types.is_null(type_col.type):
                raise IngestSchemaError(f"column {EVENT_TYPE!r} must hold strings (got {type_col.type})")
            errors.add_mask(pc.is_null(type_col), EVENT_TYPE, "required (missing)")
            present = list(pc.unique(type_col.drop_null()).to_pylist())
            unknown = sorted(t for t in present if not self.specs.has_event_type(t))
            if unknown:
                known = ", ".join(sorted(self.specs.event_types)) or "none"
                raise IngestSchemaError(f"unknown event types: {', '.join(unknown)}; the datasource defines: {known}")
            types = dict.fromkeys(sorted(present))
        type_specs = {t: self.specs.event_type(t) for t in types}
        allowed = set().union(*(s.parameters for s in type_specs.values())) if type_specs else set()
        unknown_params = [p for p in params if p not in allowed]
        if unknown_params:
            self._unknown(unknown_params, "parameters of " + ", ".join(type_specs) if type_specs else "parameters",
                          sorted(allowed))
            if self.options.unknown_columns != "send":
                params = {k: v for k, v in params.items() if k in allowed}

        # columns shared by every type are coerced once, on the whole batch
        user_id = self._user_id(top[USER_ID], USER_ID, errors)
        event_id = None
        if EVENT_ID in top:
            event_id = self._user_id(top[EVENT_ID], EVENT_ID, errors)  # same rule: non-empty string
        date_text = date_ms = None
        if EVENT_DATE in top:
            date_spec = FieldSpec(EVENT_DATE, "datetime", "datetime")
            arr = _plain(top[EVENT_DATE])
            if not pa.types.is_null(arr.type):
                date_text, date_ms = self.coerce.datetime(arr, date_spec, EVENT_DATE, errors)
        user_cols = self._contact_columns(user, errors, prefix=USER_DATA + ".", user_id_required=False) \
            if user else None
        if user_cols and USER_ID in user_cols:
            inner = user_cols[USER_ID]
            differs = pc.and_(pc.is_valid(inner), pc.not_equal(inner, user_id))
            errors.add_mask(differs, USER_DATA + "." + USER_ID, "must equal the event's _user_id")

        now = self.options.now_ms()
        if date_ms is not None:
            delta = pc.abs(pc.subtract(date_ms.cast(pa.int64()), now))
            in_window = pc.fill_null(pc.less_equal(delta, WINDOW_MS), True).to_numpy(zero_copy_only=False)
        else:
            in_window = np.ones(n, dtype=bool)  # no date: the API uses "now"

        base: dict[str, pa.Array] = {USER_ID: user_id}
        if event_id is not None:
            base[EVENT_ID] = event_id
        if date_text is not None:
            base[EVENT_DATE] = date_text

        groups: list[Group] = []
        for etype, spec in type_specs.items():
            if type_col is None:
                rows = None
                sub_params = params
                sub_base, sub_user, sub_window = base, user_cols, in_window
                m = n
            else:
                mask = pc.fill_null(pc.equal(type_col, etype), False)
                rows = _mask_indices(mask)
                if len(rows) == 0:
                    continue
                take = pa.array(rows, pa.int64())
                m = len(rows)
                sub_params = {k: v.take(take) for k, v in params.items()}
                sub_base = {k: v.take(take) for k, v in base.items()}
                sub_user = {k: v.take(take) for k, v in user_cols.items()} if user_cols else user_cols
                sub_window = in_window[rows]
            sub_errors = RowErrors(m)
            norm = self._params(spec, sub_params, sub_errors)
            if rows is None:
                errors.parts.extend(sub_errors.parts)
            else:
                errors.extend(sub_errors, rows)
            groups.append(Group(m, rows, dict(sub_base), etype, norm, sub_user, sub_window))
        return Validated(n, groups, errors)

    def _params(self, spec: EventTypeSpec, cols: Mapping[str, pa.Array], errors: RowErrors) -> dict[str, pa.Array]:
        out: dict[str, pa.Array] = {}
        missing: dict[str, pa.Array] = {}  # null in the input (an invalid value is not "missing")
        prefix = EVENT_PARAMETERS + "."
        for name, arr in cols.items():
            field_name = prefix + name
            missing[name] = pc.is_null(_nan_to_null(_plain(arr)))
            pspec = spec.parameters.get(name)
            if pspec is None and self.options.unknown_columns == "send" and not any(
                    name in other.parameters for other in self.specs.event_types.values() if other is not None):
                pspec = FieldSpec(name)  # unknown everywhere: sent unchecked
            if pspec is None:  # a parameter of another type in a mixed frame
                errors.add_mask(pc.is_valid(arr), field_name, f"not a parameter of event type {spec.uid!r}")
                continue
            out[name] = self.coerce.column(arr, pspec, field_name, errors)
        for name, pspec in spec.parameters.items():
            if not pspec.required:
                continue
            if name not in out:
                errors.add(np.arange(errors.n), prefix + name, "required parameter is missing")
            else:
                errors.add_mask(missing[name], prefix + name, "required parameter is missing")
        return out
