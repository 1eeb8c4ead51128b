"""Turn JSON entities into Arrow arrays of a fixed type, without crashing on bad data.

Each column is built from its list of values with one ``pyarrow.array`` call (the fast path
of ``to_array``), or, for raw scroll pages, read from the pages' JSON bodies by Arrow's
JSON reader when it reads them exactly (see ``BatchBuilder``). Only when the fast path
fails does the column fall back to a per-value coercion: safe coercions are applied
(``"12.5"`` -> 12.5 for a number, ``"1"`` -> true for a boolean, a scalar -> a one-element
list for a multi-value attribute, a number -> its text for a string...), and a value that
cannot be represented becomes null and is counted in ``InvalidValues`` (and the first
few are logged).
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
import pyarrow.json as pajson

from ..client.endpoints import ENTITIES as _ENTITIES  # a scroll page's list of entities
from ..datatypes import parse_bool
from .schema import ExportSchema

log = logging.getLogger(__name__)

_INVALID = object()  # marker returned by a coercer for a value that does not fit
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError,
                 ValueError)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LIST_OR_NONE = frozenset({list, type(None)})
_ATTRIBUTES = "attributesData"  # an audience contact's attributes


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
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    parsed = parse_bool(v)
    return _INVALID if parsed is None else parsed


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


def _json_type(t: pa.DataType) -> pa.DataType | None:
    """The type Arrow's JSON reader reads a column of type ``t`` as, or None if it cannot.

    Dates and timestamps are read as text and cast like ``to_array`` casts them; lists
    hold any of the other types.
    """
    if pa.types.is_string(t) or pa.types.is_boolean(t) or t in (pa.float64(), pa.int64()):
        return t
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        return pa.string()
    if pa.types.is_list(t) and not pa.types.is_list(t.value_type):
        inner = _json_type(t.value_type)
        return pa.list_(inner) if inner is not None else None
    return None


class _Page:
    """One page of a chunk: its entities as a struct array (from the JSON reader), or the
    Python values of every column (``values``, by column index); and its number of rows."""

    __slots__ = ("entities", "rows", "values")

    def __init__(self, rows: int, entities: pa.StructArray | None = None,
                 values: dict[int, list[Any]] | None = None) -> None:
        self.rows = rows
        self.entities = entities
        self.values = values or {}


class _NeedsDecoding(Exception):
    """Raw pages that the JSON reader cannot convert exactly: they are decoded instead."""


class BatchBuilder:
    """Collects scroll pages, then builds one RecordBatch with ``schema``.

    Pages come decoded (``add``: a list of dicts) or as the API sent them
    (``add_raw``: the JSON body's bytes, when ``reads_raw``).

    A decoded page's values are copied into per-column lists as it arrives, so its dicts can
    be freed at once (holding decoded dicts across pages made the garbage collector cost as
    much as the conversion); ``build`` converts each column of the chunk with
    ``to_array`` (one ``pyarrow.array`` call, then per-value coercions if it fails).

    Raw pages are parsed at ``build`` by Arrow's JSON reader, the pages of a chunk in one
    call that runs in C++ without holding the GIL, into one struct per entity (the audience
    fields, with the attributes as a nested struct). The reader is strict: a value whose
    JSON type is not its column's (a number in a text column, a boolean in a number column,
    ``1.5`` in an integer column, a text in a list column), a ``null`` entity or a duplicate
    key is an error, never a conversion. The pages are then parsed one by one and those that
    fail are decoded and added as decoded pages. A column whose values all came from the
    reader is taken as it is (dates and timestamps cast from text, as ``to_array`` does);
    any other column is converted with ``to_array`` from the chunk's values (the
    reader's as Python values, which ``to_array`` converts to the same thing). Either way
    a value ends up as ``to_array`` makes it from the decoded JSON, with the same invalid
    counts.
    """

    def __init__(self, schema: ExportSchema, invalid: InvalidValues) -> None:
        self.schema = schema
        self.invalid = invalid
        self._columns = schema.columns
        fields: dict[str, dict[str, tuple[int, pa.DataType]]] = {"top": {}, "attr": {}}
        #: per column: (where, child index) in the entity struct, None if the reader cannot read it
        self._route: list[tuple[str, int] | None] = []
        for col in self._columns:
            json_type = None if col.name == "_event_parameters" else _json_type(col.type)
            known = fields[col.where].get(col.key)
            if json_type is None or (known is not None and known[1] != json_type) or (
                    col.where == "top" and col.key == _ATTRIBUTES):
                self._route.append(None)
                continue
            if known is None:
                known = fields[col.where][col.key] = (len(fields[col.where]), json_type)
            self._route.append((col.where, known[0]))
        self._has_attr = any(col.where == "attr" for col in self._columns)
        #: whether ``add_raw`` can be used: the reader reads every column
        self.reads_raw = bool(self._route) and all(r is not None for r in self._route)
        entity_fields = [pa.field(k, t) for k, (_, t) in fields["top"].items()]
        self._attr_index: int | None = None
        if fields["attr"]:
            self._attr_index = len(entity_fields)
            attrs = pa.struct([pa.field(k, t) for k, (_, t) in fields["attr"].items()])
            entity_fields.append(pa.field(_ATTRIBUTES, attrs))
        self._entity_type = pa.struct(entity_fields)
        self._json_options = pajson.ParseOptions(
            explicit_schema=pa.schema([pa.field(_ENTITIES, pa.list_(self._entity_type))]),
            unexpected_field_behavior="ignore", newlines_in_values=True)
        self._pages: list[_Page | bytes] = []
        self.rows = 0  # rows of the decoded pages added since the last build
        self.pages = 0  # pages added since the last build (decoded and raw)

    # -- decoded pages ----------------------------------------------------------------------
    def add(self, entities: Sequence[Any]) -> None:
        """Add one page of decoded entities (entities that are not JSON objects are skipped)."""
        self.pages += 1
        page = self._decoded(entities)
        if page is not None:
            self._pages.append(page)
            self.rows += page.rows

    def _decoded(self, entities: Sequence[Any]) -> _Page | None:
        rows = [e for e in entities if isinstance(e, dict)]
        if not rows:
            return None
        attrs: list[dict[str, Any]] = []
        if self._has_attr:
            attrs = [a if isinstance(a := e.get(_ATTRIBUTES), dict) else {} for e in rows]
        values: dict[int, list[Any]] = {}
        for i, col in enumerate(self._columns):
            key = col.key
            if col.where == "attr":
                values[i] = [a.get(key) for a in attrs]
            elif col.name == "_event_parameters":
                values[i] = _json_texts([e.get(key) for e in rows], col.name, self.invalid)
            else:
                values[i] = [e.get(key) for e in rows]
        return _Page(len(rows), values=values)

    # -- raw pages --------------------------------------------------------------------------
    def add_raw(self, content: bytes) -> None:
        """Add one scroll page's JSON body (``{"entities": [...], ...}``); it is parsed at
        ``build``. Only when ``reads_raw``."""
        if not self.reads_raw:
            raise ValueError("Arrow's JSON reader cannot read every column of this schema: use add()")
        self.pages += 1
        self._pages.append(content)

    def _read(self, content: bytes) -> _Page:
        """The entities of one or more page bodies (one per line) as one struct array."""
        buf = pa.py_buffer(content)
        options = pajson.ReadOptions(use_threads=False, block_size=max(1 << 20, buf.size + 1))
        try:
            table = pajson.read_json(pa.BufferReader(buf), read_options=options, parse_options=self._json_options)
        except _ARROW_ERRORS as exc:
            raise _NeedsDecoding from exc
        lists = table.column(0)
        if lists.num_chunks == 0:
            return _Page(0)
        entities = (lists.chunk(0) if lists.num_chunks == 1 else lists.combine_chunks()).flatten()
        if entities.null_count:
            raise _NeedsDecoding  # a null entity, which the decoded route skips
        return _Page(len(entities), entities=entities)

    def _read_pages(self, contents: list[bytes]) -> list[_Page]:
        if len(contents) > 1:
            try:
                return [self._read(b"\n".join(contents))]
            except _NeedsDecoding:
                pass  # find the page(s) to decode
        pages: list[_Page] = []
        for content in contents:
            try:
                pages.append(self._read(content))
            except _NeedsDecoding:
                data = orjson.loads(content) if content else None
                page = self._decoded((data or {}).get(_ENTITIES) or [])  # as the client decodes a page
                if page is not None:
                    pages.append(page)
        return pages

    # -- batches ----------------------------------------------------------------------------
    def build(self) -> pa.RecordBatch:
        """The pages added since the last build as one RecordBatch (maybe with no rows)."""
        items, self._pages, self.rows, self.pages = self._pages, [], 0, 0
        pages: list[_Page] = []
        raw: list[bytes] = []
        for item in [*items, None]:
            if isinstance(item, bytes):
                raw.append(item)
                continue
            if raw:
                pages += self._read_pages(raw)
                raw = []
            if item is not None:
                pages.append(item)
        pages = [p for p in pages if p.rows]
        read = None  # the columns, when the reader read every page
        if pages and all(p.entities is not None for p in pages):
            structs = [p.entities for p in pages]
            read = self._split(structs[0] if len(structs) == 1 else pa.concat_arrays(structs))
        arrays = []
        for i, (col, route) in enumerate(zip(self._columns, self._route)):
            if read is not None:
                assert route is not None
                arrays.append(self._finish(read[route[0]][route[1]], col.type, col.name))
                continue
            values: list[Any] = []
            for p in pages:
                if p.entities is None:
                    values.extend(p.values[i])
                else:  # a page the reader read, in a chunk with a decoded page
                    assert route is not None
                    values.extend(self._split(p.entities)[route[0]][route[1]].to_pylist())
            arrays.append(to_array(values, col.type, col.name, self.invalid))
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema.arrow)

    def _split(self, entities: pa.StructArray) -> dict[str, list[pa.Array]]:
        """The entity struct's columns: the audience fields (``top``) and the attributes."""
        top = entities.flatten()
        attrs = top[self._attr_index].flatten() if self._attr_index is not None else []
        return {"top": top, "attr": attrs}

    def _finish(self, arr: pa.Array, t: pa.DataType, column: str) -> pa.Array:
        if arr.type == t:
            return arr
        try:  # dates and timestamps (or lists of them): text -> the column's type, as to_array does
            return pc.cast(arr, t)
        except _ARROW_ERRORS:
            return to_array(arr.to_pylist(), t, column, self.invalid)


def entities_to_batch(entities: Sequence[Any], schema: ExportSchema,
                      invalid: InvalidValues) -> pa.RecordBatch:
    """One RecordBatch with ``schema`` from a list of audience contacts or events
    (entities that are not JSON objects are skipped)."""
    builder = BatchBuilder(schema, invalid)
    builder.add(entities)
    return builder.build()
