"""Stable ``_event_id``: taken from a column, or derived from the event's content.

The API drops an event whose ``_event_id`` it already stored, so a stable id is what makes a
retried task or a re-run of the same file safe. When the input has an ``_event_id`` column it
is used as is. Otherwise the id is derived, deterministically, from:

* the event type (always), and
* by default: ``_user_id``, ``_event_date`` when the input has that column, and every event
  parameter that has a value in the row (a null parameter is left out, so adding an empty
  column, or a new optional parameter in the specs, does not change any id);
* or, with ``event_id_fields=[...]``, only the named fields (plus the event type): e.g.
  ``["order_id"]`` makes the order id the business key.

Values are hashed **after** the loader's coercions (timestamps as ISO 8601 UTC milliseconds,
numbers by their float64 value: ``10`` and ``10.0`` are the same), so the same event read from
a DataFrame, a Parquet file or a SQL table gets the same id. ``_user_data`` is never hashed.

Canonical form (hashed as UTF-8): ``d1-<len>:<event type>`` then, for each field in a fixed
order (``_user_id``, ``_event_date``, then parameters sorted by name, each written
``p.<name>``), ``<field>=<len>:<value>``, joined by ``\x1f``; a null field is left out. Lengths
are in characters; numbers are written as the signed 64-bit integer of their IEEE-754 bits;
lists as their elements, each written ``=<len>:<value>``, joined by ``,``.

Id format: ``"d1-"`` + the first 128 bits of BLAKE2b over a length-prefixed canonical form,
in hex (35 characters). The ``d1`` is the version of this recipe; it will not change within a
major version of this package (a golden test pins it).

Consequences (see docs/idempotency.md): two rows with the same type, user, date and
parameters are the same event (the second is dropped by the API); correcting a parameter and
re-sending creates a *new* event (events are immutable) unless ``event_id_fields`` names a
business key; without ``_event_date`` the date is not part of the id, so identical events on
different days collapse unless the parameters differ.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from .errors import IngestSchemaError
from .specs import EVENT_DATE, EVENT_PARAMETERS, USER_ID

PREFIX = "d1-"
_SEP = "\x1f"


def _text(arr: pa.Array) -> pa.Array:
    """Canonical text of a normalised column (null stays null)."""
    t = arr.type
    if pa.types.is_string(t):
        return arr
    if pa.types.is_large_string(t):
        return arr.cast(pa.string())
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        # numbers: the IEEE-754 bits of the float64 value (10 == 10.0; -0.0 == 0.0), which does
        # not depend on any library's float formatting
        as_float = pc.add(arr.cast(pa.float64(), safe=False), 0.0)
        return as_float.view(pa.int64()).cast(pa.string())
    if pa.types.is_boolean(t):
        return arr.cast(pa.string())
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.string())
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        flat = arr.flatten()
        texts = _prefixed(_text(flat), "")
        rebuilt = pa.ListArray.from_arrays(pc.subtract(arr.offsets, arr.offsets[0]), pc.fill_null(texts, "~"),
                                           mask=arr.is_null())
        return pc.binary_join(rebuilt, ",")
    return arr.cast(pa.string())


def _prefixed(text: pa.Array, name: str) -> pa.Array:
    """``name=<length>:<value>``, null where the value is null."""
    length = pc.utf8_length(text).cast(pa.string())
    return pc.binary_join_element_wise(pa.scalar(name + "="), length, pa.scalar(":"), text, "")


class EventIdDeriver:
    """Derives ``_event_id`` from the normalised columns of one event type.

    Args:
        fields: the fields that identify an event (``_user_id``, ``_event_date``, parameter
            names, optionally written ``_event_parameters.<name>``). None: the default recipe.
    """

    def __init__(self, fields: Sequence[str] | None = None) -> None:
        if fields is not None and isinstance(fields, str):
            fields = [fields]
        self.fields = None if fields is None else sorted(
            {f[len(EVENT_PARAMETERS) + 1:] if f.startswith(EVENT_PARAMETERS + ".") else f for f in fields}
        )

    def canonical(self, event_type: str, top: Mapping[str, pa.Array], params: Mapping[str, pa.Array]) -> pa.Array:
        """The canonical text hashed for each row (exposed for tests and docs)."""
        n = len(top[USER_ID])
        columns: list[tuple[str, pa.Array]] = []
        if self.fields is None:
            columns.append((USER_ID, top[USER_ID]))
            if EVENT_DATE in top:
                columns.append((EVENT_DATE, top[EVENT_DATE]))
            for name in sorted(params):
                columns.append(("p." + name, params[name]))
        else:
            for name in self.fields:
                if name in (USER_ID, EVENT_DATE):
                    if name not in top:
                        raise IngestSchemaError(f"event_id_fields names {name!r} but the input has no such column")
                    columns.append((name, top[name]))
                elif name in params:
                    columns.append(("p." + name, params[name]))
                else:
                    raise IngestSchemaError(
                        f"event_id_fields names {name!r}, which is not a column or parameter of the input "
                        f"(event type {event_type!r})")
        parts: list[pa.Array | pa.Scalar] = [pa.scalar(PREFIX + _prefix_len(event_type))]
        for name, arr in columns:
            parts.append(_prefixed(_text(arr), name))
        if len(parts) == 1:
            return pa.array([PREFIX + _prefix_len(event_type)] * n, pa.string())
        # a null part (a parameter without a value) is skipped with its separator
        return pc.binary_join_element_wise(*parts, _SEP, null_handling="skip")

    def derive(self, event_type: str, top: Mapping[str, pa.Array], params: Mapping[str, pa.Array]) -> pa.Array:
        text = self.canonical(event_type, top, params)
        data = text.cast(pa.binary()).to_pylist()
        blake = hashlib.blake2b
        return pa.array([PREFIX + blake(b, digest_size=16).hexdigest() for b in data], pa.string())


def _prefix_len(value: str) -> str:
    return f"{len(value)}:{value}"


def derive_event_id(event_type: str, user_id: str, parameters: Mapping[str, object] | None = None, *,
                    event_date: str | None = None) -> str:
    """The id the loader derives for one event given in API form (for tests and docs).

    ``parameters`` and ``event_date`` must already be coerced (numbers as numbers, the date as
    ``YYYY-MM-DDTHH:MM:SS.sssZ``).
    """
    top: dict[str, pa.Array] = {USER_ID: pa.array([user_id], pa.string())}
    if event_date is not None:
        top[EVENT_DATE] = pa.array([event_date], pa.string())
    params = {k: pa.array([v]) for k, v in (parameters or {}).items() if v is not None}
    return str(EventIdDeriver().derive(event_type, top, params)[0].as_py())
