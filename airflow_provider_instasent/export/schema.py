"""Stable Arrow schemas for exports (their SQL DDL is the dialect's: ``dialects``).

The audience schema comes from the project's attribute specs (``GET /specs/attributes``),
never from the data: a contact that lacks an attribute (or whose value the token's privacy
level hides) simply has a null there, so every batch of an export, and every export of the
same project, has the same columns in the same order.

Column layout of an audience (or segment) export:

* ``audience_id`` (string), ``created_at``, ``updated_at`` (timestamp[ms, UTC]): the audience
  contact's own fields;
* one column per enabled attribute spec, named by its ``uid``, typed by ``DATA_TYPES``,
  as ``list<...>`` when ``multivalue > 1``;
* ``_datasources`` and ``_ds_contact_ids`` (``list<string>``) always, last.

No module here imports Airflow.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import pyarrow as pa

from ..client.errors import InstasentConfigError
from ..datatypes import ARROW_TYPES, KINDS, arrow_type, multivalue_limit

log = logging.getLogger(__name__)

#: Timestamps are exported as milliseconds in UTC.
TIMESTAMP = pa.timestamp("ms", tz="UTC")
STRING_LIST = pa.list_(pa.string())

#: Attribute ``dataType`` (lower-cased) -> Arrow type, from the one table in
#: ``datatypes``. Anything else is exported as a string.
DATA_TYPES: dict[str, pa.DataType] = {spelling: ARROW_TYPES[kind] for spelling, kind in KINDS.items()}

#: Attributes always exported as ``list<string>`` (source tracking of the merged contact).
SOURCE_TRACKING = ("_datasources", "_ds_contact_ids")

#: Audience contact fields outside ``attributesData``: column name -> (JSON key, type).
AUDIENCE_FIELDS: tuple[tuple[str, str, pa.DataType], ...] = (
    ("audience_id", "id", pa.string()),
    ("created_at", "createdAt", TIMESTAMP),
    ("updated_at", "updatedAt", TIMESTAMP),
)

#: Events: column name -> (JSON key of the scroll entity, type). ``_event_parameters`` is a
#: JSON string (sorted keys) because parameters differ by event type.
EVENT_FIELDS: tuple[tuple[str, str, pa.DataType], ...] = (
    ("_event_id", "_event_id", pa.string()),
    ("_event_type", "_event_type", pa.string()),
    ("_event_date", "_event_date", TIMESTAMP),
    ("_user_id", "_user_id", pa.string()),
    ("audience_id", "audienceId", pa.string()),
    ("datasource", "datasource", pa.string()),
    ("received_at", "receivedAt", TIMESTAMP),
    ("_event_parameters", "_event_parameters", pa.string()),
)

#: Merge (upsert) key per kind of export.
AUDIENCE_KEY = "audience_id"
EVENTS_KEY = "_event_id"

Where = Literal["top", "attr"]


@dataclass(frozen=True)
class Column:
    """One exported column: its name, where its value comes from, and its Arrow type."""

    name: str
    key: str
    where: Where
    type: pa.DataType
    data_type: str = ""  # the spec's dataType, for the field metadata

    @property
    def field(self) -> pa.Field:
        meta = {"instasent.key": self.key, "instasent.source": self.where}
        if self.data_type:
            meta["instasent.dataType"] = self.data_type
        return pa.field(self.name, self.type, nullable=True, metadata=meta)


@dataclass(frozen=True)
class ExportSchema:
    """The columns of one export, the Arrow schema built from them, and the merge key."""

    kind: Literal["audience", "events"]
    columns: tuple[Column, ...]
    key: str

    @cached_property
    def arrow(self) -> pa.Schema:
        return pa.schema([c.field for c in self.columns], metadata={"instasent.kind": self.kind})

    @cached_property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def _multivalue(spec: Mapping[str, Any]) -> bool:
    return multivalue_limit(spec) > 1


def arrow_type_for_spec(spec: Mapping[str, Any]) -> pa.DataType:
    """The Arrow type of one attribute spec (``dataType`` + ``multivalue``)."""
    uid = str(spec.get("uid") or "")
    if uid in SOURCE_TRACKING:
        return STRING_LIST
    base = arrow_type(spec.get("dataType"))
    return pa.list_(base) if _multivalue(spec) else base


def audience_schema(
    specs: Iterable[Mapping[str, Any]],
    attributes: Sequence[str] | None = None,
) -> ExportSchema:
    """The audience/segment export schema from the project's attribute specs.

    ``attributes`` restricts the attribute columns to these uids (in this order; the
    audience fields and the source-tracking lists are always present). Specs with
    ``enabled: false`` are skipped. A uid that collides with an audience field
    (``audience_id``, ``created_at``, ``updated_at``), or with an earlier column when compared
    case-insensitively (SQL identifiers are case-insensitive in DuckDB and SQLite), is
    exported as ``attr_<uid>`` (with a numeric suffix if needed).
    """
    by_uid: dict[str, Mapping[str, Any]] = {}
    for spec in specs:
        uid = spec.get("uid")
        if not isinstance(uid, str) or not uid:
            continue
        if spec.get("enabled") is False:
            continue
        by_uid.setdefault(uid, spec)
    if attributes is not None:
        missing = [a for a in attributes if a not in by_uid and a not in SOURCE_TRACKING]
        if missing:
            raise InstasentConfigError(
                f"unknown attribute(s) {', '.join(map(repr, missing))}: not in /specs/attributes"
            )
        chosen = [by_uid.get(a, {"uid": a}) for a in attributes if a not in SOURCE_TRACKING]
    else:
        chosen = [s for u, s in by_uid.items() if u not in SOURCE_TRACKING]

    columns: list[Column] = [Column(name, key, "top", typ) for name, key, typ in AUDIENCE_FIELDS]
    taken = {c.name.casefold() for c in columns}
    for spec in [*chosen, *({"uid": u, "dataType": "string", "multivalue": 2} for u in SOURCE_TRACKING)]:
        uid = str(spec["uid"])
        name = uid
        if name.casefold() in taken:
            name = f"attr_{uid}"
            n = 2
            while name.casefold() in taken:
                name = f"attr_{uid}_{n}"
                n += 1
            log.warning("attribute %r is exported as column %r (name collision)", uid, name)
        taken.add(name.casefold())
        columns.append(Column(name, uid, "attr", arrow_type_for_spec(spec), str(spec.get("dataType") or "")))
    return ExportSchema("audience", tuple(columns), AUDIENCE_KEY)


def events_schema() -> ExportSchema:
    """The fixed events export schema (see ``EVENT_FIELDS``)."""
    return ExportSchema("events", tuple(Column(n, k, "top", t) for n, k, t in EVENT_FIELDS), EVENTS_KEY)
