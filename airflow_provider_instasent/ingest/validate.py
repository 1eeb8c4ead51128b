"""The fast path's validation: one job, checking a batch of one kind against the datasource specs.

``Validator`` splits an Arrow record batch into its top-level, parameter and
``_user_data`` columns (and, for a frame of several event types, into one ``Group``
per type), checks the required fields, unknown columns and the automation window, and
coerces every column with ``Coercer``. A batch comes out as a
``Validated``: its groups of normalised columns, ready for ``encode``, and **every
error of every row** in a ``RowErrors``.

Problems that concern a whole column rather than some rows (an unknown column or event type,
a column of a type that cannot be coerced, naive timestamps without ``assume_timezone``)
raise ``IngestSchemaError`` naming the column, before anything of that batch
is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .coerce import CoerceOptions, Coercer, is_str, nan_to_null, plain
from .errors import IngestSchemaError
from .rowerrors import RowErrors, mask_indices
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
ID_SPEC = FieldSpec(USER_ID, "string", "string", required=True, max_length=MAX_ID_LENGTH)


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
        cols[name] = plain(col)
    return cols


def _struct_fields(arr: pa.Array, name: str) -> dict[str, pa.Array]:
    """The fields of a struct / map / JSON-text column as separate columns."""
    arr = plain(arr)
    t = arr.type
    if pa.types.is_null(t):
        return {}
    if pa.types.is_map(t) or is_str(t):
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
        specs: the loaded ``ProjectSpecs``.
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

    def droppable(self, field_name: str) -> bool:
        """Whether an invalid value of ``field_name`` may be left out of its item and the row
        kept (``invalid_values="drop_value"``): any attribute, ``_user_data`` attribute or
        optional parameter; never an id, the type, the date, a required parameter, nor a
        problem of the whole item (no field)."""
        if not field_name or field_name in (USER_ID, EVENT_ID, EVENT_TYPE, EVENT_DATE, USER_DATA + "." + USER_ID):
            return False
        prefix = EVENT_PARAMETERS + "."
        if field_name.startswith(prefix):
            name = field_name[len(prefix):]
            types = [self.specs.event_type(self.event_type)] if self.event_type else \
                [s for s in self.specs.event_types.values() if s is not None]
            return not any(name in t.parameters and t.parameters[name].required for t in types)
        return True

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
            type_col = self.coerce.objects(plain(top.pop(EVENT_TYPE)), FieldSpec(EVENT_TYPE), EVENT_TYPE, errors)
            if not is_str(type_col.type) and not pa.types.is_null(type_col.type):
                raise IngestSchemaError(f"column {EVENT_TYPE!r} must hold strings (got {type_col.type})")
            errors.add_mask(pc.is_null(type_col), EVENT_TYPE, "required (missing)")
            present = list(pc.unique(type_col.drop_null()).to_pylist())
            unknown = sorted(t for t in present if not self.specs.has_event_type(t))
            if unknown:
                known = ", ".join(sorted(self.specs.event_types)) or "none"
                raise IngestSchemaError(f"unknown event types: {', '.join(unknown)}; the datasource defines: {known}")
            types = dict.fromkeys(sorted(present))
        type_specs = {t: self.specs.event_type(t) for t in types}
        from_text = EVENT_PARAMETERS in cols and is_str(plain(cols[EVENT_PARAMETERS]).type)
        if n and not from_text:  # a required parameter absent from the input: one error, not one per row
            for etype, tspec in type_specs.items():
                absent = [p for p, ps in tspec.parameters.items() if ps.required and p not in params]
                if absent:
                    raise IngestSchemaError(
                        f"event type {etype!r} requires the parameter(s) {', '.join(map(repr, absent))}, and the "
                        f"input has no such column (nor {EVENT_PARAMETERS}.<name> field): add it, or map a source "
                        f"column to it with columns={{'<source column>': {absent[0]!r}}}")
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
            arr = self.coerce.objects(plain(top[EVENT_DATE]), date_spec, EVENT_DATE, errors)
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
                rows = mask_indices(mask)
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
            missing[name] = pc.is_null(nan_to_null(plain(arr)))
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
