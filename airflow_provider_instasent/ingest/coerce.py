"""The fast path's coercions: one job, turning one Arrow column into the form the API takes.

``Coercer`` coerces a column for a field spec (``FieldSpec``) with
``pyarrow.compute`` on the whole column; Python touches only the rows that fail (to format
their message), and every failing row is recorded in a ``RowErrors``. The
output is a **normalised column**: strings, numbers, ``"1"``/``"0"`` booleans,
``YYYY-MM-DD`` dates, ``YYYY-MM-DDTHH:MM:SS.sssZ`` timestamps, lists for multi-valued
fields, ready for ``encode``. A column of a type that cannot be coerced at all (or naive
timestamps without ``assume_timezone``, see ``CoerceOptions``) raises
``IngestSchemaError`` naming the column.

A column of Python values Arrow cannot type on its own (a pandas ``object`` column mixing
text, numbers, bytes, datetimes, lists...; a SQL column of mixed values) becomes an *objects
column* (``objects_column``): each value's text by the rules of ``object_value`` (the table
in docs/ingest.md, "Coercions"), or the reason it has none. ``Coercer.column`` reads it for
the field's spec: the reasons become row errors, the texts are coerced like any text column.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..datatypes import FALSE_STRINGS, TRUE_STRINGS
from .errors import IngestSchemaError
from .rowerrors import RowErrors, mask_indices
from .specs import FieldSpec

_ISO_WITH_TZ = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|z|[+-]\d{2}(:?\d{2})?)$"
_ISO_NAIVE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?$"
_DATE = r"^\d{4}-\d{2}-\d{2}$"
_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_TRUE = sorted(TRUE_STRINGS)
_FALSE = sorted(FALSE_STRINGS)
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
    #: ``"e164"``: phone fields normalised to E.164 by ``phones.e164_column`` (``default_region``)
    phones: str = "check"
    default_region: str | None = None
    now_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _values_at(arr: pa.Array, idx: np.ndarray) -> list[Any]:
    return arr.take(pa.array(idx, pa.int64())).to_pylist()


def plain(arr: pa.Array) -> pa.Array:
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


def is_str(t: pa.DataType) -> bool:
    """Whether ``t`` is a string type (after ``plain``, ``string`` or ``large_string``)."""
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) \
        or pa.types.is_list_view(t) or pa.types.is_large_list_view(t)


def nan_to_null(arr: pa.Array) -> pa.Array:
    """NaN values of a floating column as nulls (a missing value, not an invalid one)."""
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


# ---------------------------------------------------------------------------------------------
# columns of Python values (objects columns)
# ---------------------------------------------------------------------------------------------
#: The fields of an objects column: each value's text, its elements (a list value), or the
#: reason it has neither. The names cannot clash with a user's struct column by accident.
OBJ_TEXT, OBJ_ITEMS, OBJ_ERROR = "instasent:text", "instasent:items", "instasent:error"
OBJECTS_TYPE = pa.struct([(OBJ_TEXT, pa.string()), (OBJ_ITEMS, pa.list_(pa.string())), (OBJ_ERROR, pa.string())])


class Uncoercible(ValueError):
    """A Python value that has no text form (``object_value``); the message is the reason."""


def _missing(v: Any) -> bool:
    if v is None or (isinstance(v, float) and v != v):
        return True
    import pandas as pd

    return v is pd.NaT or v is pd.NA


def unicode_problem(text: str) -> str | None:
    """Why ``text`` cannot be sent as UTF-8 (a lone surrogate), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"not valid Unicode text: a lone surrogate {text[exc.start]!r} at position {exc.start}"
    return None


def object_value(v: Any) -> str | list[str | None] | None:
    """The text form of one Python value (None: missing), a list's texts, or ``Uncoercible``.

    The rules (docs/ingest.md, "Coercions"): text as is (a lone surrogate is refused); a
    boolean as ``true``/``false``; an integer, and a float or decimal with no fractional part,
    as integer digits (``7.0`` → ``7``, as in a float column); other floats in their shortest
    round-trip form; a date-time as ISO 8601 (an aware one in UTC, ``…T…sssZ``; a naive one
    without zone, read with ``assume_timezone`` where a date-time is expected); a date as
    ``YYYY-MM-DD``; bytes decoded as UTF-8; a UUID as its canonical text; a list, tuple or set
    as its elements (for multi-valued fields). Refused: non-finite numbers, bytes that are not
    UTF-8, mappings, nested lists and any other object.
    """
    if _missing(v):
        return None
    if isinstance(v, str):
        problem = unicode_problem(v)
        if problem:
            raise Uncoercible(problem)
        return v
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating, decimal.Decimal)):
        finite = v.is_finite() if isinstance(v, decimal.Decimal) else math.isfinite(v)
        if not finite:
            raise Uncoercible(f"not a finite number ({v})")
        if abs(float(v)) < 2**53 and v == int(v):  # integral (and exactly so in a float64)
            return str(int(v))
        return str(v) if isinstance(v, decimal.Decimal) else repr(float(v))
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None and v.utcoffset() is not None:
            return v.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return v.isoformat(timespec="milliseconds")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, np.datetime64):
        return object_value(_np_datetime(v))
    if isinstance(v, (bytes, bytearray, memoryview)):
        try:
            return object_value(bytes(v).decode("utf-8"))
        except UnicodeDecodeError:
            raise Uncoercible(f"not UTF-8 text: {_show(bytes(v))}") from None
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, Mapping):
        raise Uncoercible(f"a mapping where a value is expected: {_show(v)}")
    if isinstance(v, (list, tuple, set, frozenset, np.ndarray)):
        items: list[str | None] = []
        for x in (sorted(v, key=str) if isinstance(v, (set, frozenset)) else list(v)):
            if isinstance(x, (list, tuple, set, frozenset, np.ndarray, Mapping)):
                raise Uncoercible(f"a nested list or mapping inside a list: {_show(v)}")
            text = object_value(x)
            assert not isinstance(text, list)
            items.append(text)
        return items
    raise Uncoercible(f"a {type(v).__name__} object is not a supported value: {_show(v)}")


def _np_datetime(v: np.datetime64) -> Any:
    import pandas as pd

    return pd.Timestamp(v).to_pydatetime()


def objects_column(values: Sequence[Any]) -> pa.StructArray:
    """An objects column (see the module doc) of ``values``: null where a value is missing."""
    texts: list[str | None] = []
    items: list[list[str | None] | None] = []
    reasons: list[str | None] = []
    for v in values:
        try:
            out = object_value(v)
        except Uncoercible as exc:
            texts.append(None)
            items.append(None)
            reasons.append(str(exc))
            continue
        texts.append(None if isinstance(out, list) else out)
        items.append(out if isinstance(out, list) else None)
        reasons.append(None)
    missing = [t is None and i is None and r is None for t, i, r in zip(texts, items, reasons)]
    return pa.StructArray.from_arrays(
        [pa.array(texts, pa.string()), pa.array(items, pa.list_(pa.string())), pa.array(reasons, pa.string())],
        fields=list(OBJECTS_TYPE), mask=pa.array(missing, pa.bool_()))


def is_objects(t: pa.DataType) -> bool:
    """Whether ``t`` is the type of an objects column."""
    return t == OBJECTS_TYPE


def objects_text(arr: pa.Array) -> pa.Array:
    """The texts of an objects column (null for lists and refused values)."""
    return pc.struct_field(arr, [0])


def source_values(arr: pa.Array) -> pa.Array:
    """A column as plain values, for rejects and keys: an objects column gives its texts."""
    arr = plain(arr)
    return objects_text(arr) if is_objects(arr.type) else arr


class Coercer:
    """Coerces one column to the API's form for a field spec, recording row errors."""

    def __init__(self, options: CoerceOptions) -> None:
        self.options = options

    # -- dispatch -------------------------------------------------------------------------------
    def column(self, arr: pa.Array, spec: FieldSpec, name: str, errors: RowErrors) -> pa.Array:
        arr = self.objects(plain(arr), spec, name, errors)
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

    def objects(self, arr: pa.Array, spec: FieldSpec, name: str, errors: RowErrors) -> pa.Array:
        """An objects column as a text column (a list column for a multi-valued field); its
        refused values, and lists where one value is expected, become row errors. Any other
        column is returned as it is."""
        if not is_objects(arr.type):
            return arr
        text, items, reason = (pc.struct_field(arr, [i]) for i in range(3))
        if arr.null_count:  # a null struct's children may hold anything: make them null too
            valid = arr.is_valid()
            text, items, reason = (pc.if_else(valid, c, pa.scalar(None, c.type)) for c in (text, items, reason))
        idx = mask_indices(pc.is_valid(reason))
        if len(idx):
            errors.add(idx, name, _values_at(reason, idx))
        if spec.multi:  # a scalar is a one-element list (as for Arrow input)
            one = pa.ListArray.from_arrays(pa.array(np.arange(len(text) + 1, dtype=np.int32)), text)
            scalar = pc.if_else(pc.is_valid(text), one, pa.scalar(None, items.type))
            return pc.if_else(pc.is_valid(items), items, scalar)
        errors.add_mask(pc.is_valid(items), name, lambda idx: [
            f"a list where one value is expected ({spec.name!r} is not multi-valued): {_show(v)}"
            for v in _values_at(items, idx)])
        return text

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
        null_items = mask_indices(pc.is_null(values)) if values.null_count else np.zeros(0, np.int64)
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
        if spec.max_length and is_str(out.type):
            lengths = pc.utf8_length(out)
            errors.add_mask(pc.greater(lengths, spec.max_length), name, lambda idx: [
                f"longer than maxLength {spec.max_length} ({n} characters)" for n in _values_at(lengths, idx)])
        return out

    # -- per type -------------------------------------------------------------------------------
    def string(self, arr: pa.Array, spec: FieldSpec, name: str, errors: RowErrors) -> pa.Array:
        t = arr.type
        if is_str(t):
            return arr
        if pa.types.is_integer(t):
            return arr.cast(pa.string())
        if pa.types.is_floating(t):
            arr = nan_to_null(arr)
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
            if self.options.phones == "e164":
                from .phones import e164_column

                return e164_column(out, self.options.default_region, name, errors)
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
            arr = nan_to_null(arr) if t == pa.float64() else nan_to_null(arr.cast(pa.float64()))
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
        if is_str(t):
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
            arr = nan_to_null(arr.cast(pa.float64()))
            one, zero = pc.equal(arr, 1), pc.equal(arr, 0)
            bad = pc.invert(pc.or_(one, zero))
            errors.add_mask(bad, name, lambda idx: [
                f"not a boolean (1/0/true/false): {_show(v)}" for v in _values_at(arr, idx)])
            return pc.if_else(one, "1", pc.if_else(zero, "0", pa.scalar(None, pa.string())))
        if is_str(t):
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
        if is_str(t):
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
        if is_str(t):
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
        if is_str(t) or pa.types.is_integer(t):
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
