"""Stable Arrow schemas for exports, and SQL DDL derived from them.

The audience schema comes from the project's attribute specs (``GET /specs/attributes``),
never from the data: a contact that lacks an attribute (or whose value the token's privacy
level hides) simply has a null there, so every batch of an export, and every export of the
same project, has the same columns in the same order.

Column layout of an audience (or segment) export:

* ``audience_id`` (string), ``created_at``, ``updated_at`` (timestamp[ms, UTC]): the audience
  contact's own fields;
* one column per enabled attribute spec, named by its ``uid``, typed by :data:`DATA_TYPES`,
  as ``list<...>`` when ``multivalue > 1``;
* ``_datasources`` and ``_ds_contact_ids`` (``list<string>``) always, last.

No module here imports Airflow.
"""

from __future__ import annotations

import logging
import re
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
#: :mod:`..datatypes`. Anything else is exported as a string.
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
    """The fixed events export schema (see :data:`EVENT_FIELDS`)."""
    return ExportSchema("events", tuple(Column(n, k, "top", t) for n, k, t in EVENT_FIELDS), EVENTS_KEY)


# ---------------------------------------------------------------------------------------
# SQL identifiers and DDL
# ---------------------------------------------------------------------------------------

_TABLE_PART = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


@dataclass(frozen=True)
class TableName:
    """A validated ``table`` or ``schema.table`` name."""

    name: str
    schema: str | None = None

    @classmethod
    def parse(cls, value: str) -> TableName:
        """Validate a target table name; refuse anything that is not plain identifiers.

        Accepted: ``table`` or ``schema.table`` where each part is ``[A-Za-z_][A-Za-z0-9_]*``
        (at most 63 characters). Quotes, spaces, semicolons, comments and the like are
        refused, so a table name can never carry SQL.
        """
        if not isinstance(value, str):
            raise InstasentConfigError(f"table must be a string, got {type(value).__name__}")
        parts = value.strip().split(".")
        if not 1 <= len(parts) <= 2 or not all(_TABLE_PART.match(p) for p in parts):
            raise InstasentConfigError(
                f"invalid table name {value!r}: use 'table' or 'schema.table' with letters, digits and "
                "underscores only (starting with a letter or underscore, at most 63 characters each)"
            )
        return cls(parts[-1], parts[0] if len(parts) == 2 else None)

    def with_name(self, name: str) -> TableName:
        return TableName.parse(f"{self.schema}.{name}" if self.schema else name)

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


def quote_identifier(name: str, quote: str = '"') -> str:
    """Quote one identifier, doubling any embedded quote character.

    Works for any name (column names come from the API's specs): the quoted form is always
    a single identifier, so it cannot end the identifier early and inject SQL. NUL
    characters, which no database accepts in identifiers, are refused.
    """
    if not isinstance(name, str) or not name:
        raise InstasentConfigError("an identifier must be a non-empty string")
    if "\x00" in name:
        raise InstasentConfigError(f"invalid identifier {name!r}: contains NUL")
    return quote + name.replace(quote, quote * 2) + quote


Dialect = Literal["postgres", "duckdb", "sqlite", "mysql", "generic"]


def _sql_type(t: pa.DataType, dialect: str) -> str:
    if pa.types.is_list(t):
        inner = t.value_type
        if dialect == "postgres":
            return _sql_type(inner, dialect) + "[]"
        if dialect == "duckdb":
            return _sql_type(inner, dialect) + "[]"
        return "TEXT"  # a JSON array elsewhere
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return {"duckdb": "VARCHAR", "mysql": "LONGTEXT"}.get(dialect, "TEXT")
    if pa.types.is_floating(t):
        return {"postgres": "DOUBLE PRECISION", "sqlite": "REAL", "generic": "DOUBLE PRECISION"}.get(
            dialect, "DOUBLE"
        )
    if pa.types.is_integer(t):
        return "INTEGER" if dialect == "sqlite" else "BIGINT"
    if pa.types.is_boolean(t):
        return "INTEGER" if dialect == "sqlite" else "BOOLEAN"
    if pa.types.is_date(t):
        return "TEXT" if dialect == "sqlite" else "DATE"
    if pa.types.is_timestamp(t):
        return {"postgres": "TIMESTAMPTZ", "duckdb": "TIMESTAMPTZ", "sqlite": "TEXT", "mysql": "DATETIME(3)"}.get(
            dialect, "TIMESTAMP"
        )
    return "TEXT"


def sql_type(t: pa.DataType, dialect: str) -> str:
    """The SQL column type of an Arrow type in ``dialect`` (see the mapping in docs/export.md)."""
    return _sql_type(t, dialect)


def quote_for(dialect: str) -> str:
    return "`" if dialect == "mysql" else '"'


def qualified(table: TableName, dialect: str) -> str:
    q = quote_for(dialect)
    if table.schema:
        return f"{quote_identifier(table.schema, q)}.{quote_identifier(table.name, q)}"
    return quote_identifier(table.name, q)


def create_table_sql(table: TableName, schema: pa.Schema, dialect: str) -> str:
    """``CREATE TABLE`` for ``schema`` in ``dialect``, every identifier quoted."""
    q = quote_for(dialect)
    cols = ",\n  ".join(f"{quote_identifier(f.name, q)} {sql_type(f.type, dialect)}" for f in schema)
    return f"CREATE TABLE {qualified(table, dialect)} (\n  {cols}\n)"
