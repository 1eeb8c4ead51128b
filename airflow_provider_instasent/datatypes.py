"""The one table of spec data types, shared by ingest (validation) and export (Arrow schemas).

A datasource's attribute and event-parameter specs carry a ``dataType`` string. The API
documents only a few values (``string``, ``text``, ``payload``, ``date``, ``bool``; see
``api-facts.md`` section 5); the rest of ``SPELLINGS`` are spellings the loader accepts
so that a project using them is neither rejected nor silently exported as text. Each
spelling maps to one **kind**, and everything else follows from the kind:

==========  ==========================================================  ======================
kind        ``dataType`` spellings (matched trimmed, case-insensitively)  Arrow export type
==========  ==========================================================  ======================
string      string text payload str url uri keyword enum select country  ``string``
            language locale tag tags time
email       email                                                         ``string``
phone       phone mobile phone_mobile                                     ``string``
number      number float double decimal money amount numeric              ``float64``
integer     integer int long bigint                                       ``int64``
bool        bool boolean                                                  ``bool``
date        date                                                          ``date32``
datetime    datetime date-time date_time timestamp                        ``timestamp[ms, UTC]``
any         (every other value, e.g. a type the API adds later)           ``string``
==========  ==========================================================  ======================

Decisions:

* ``time`` is a **string**, not a date-time. The guides document no ``time`` type; the
  usual meaning of the word (JSON Schema's ``format: time``, SQL's ``TIME``) is a time of
  day such as ``"14:30:00"``, which has no date and so no instant. Reading it as a date-time
  would reject every such value at ingest and turn it into null at export; as a string it is
  sent and exported as given. An instant is ``datetime``/``date-time``/``timestamp``.
* ``money``, ``amount``, ``numeric``, ``decimal`` are **numbers** (float64 both ways): the
  API's JSON carries them as numbers, and the ingest path already sent them as such.
* ``long``, ``bigint``, ``int`` are **integers** (int64 both ways).
* ``email`` and ``phone`` are strings with a shape check at ingest; ``any`` (an unknown
  type) is passed through at ingest and exported as text.

Also here, written once: the ``multivalue`` / ``multiValue`` parsing of a spec
(``multivalue_limit``) and the accepted boolean spellings (``TRUE_STRINGS``,
``FALSE_STRINGS``, ``parse_bool``).

Pure Python and pyarrow: no Airflow, no client import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import pyarrow as pa

DataKind = Literal["string", "email", "phone", "number", "integer", "bool", "date", "datetime", "any"]

#: Timestamps are exported as milliseconds in UTC.
TIMESTAMP = pa.timestamp("ms", tz="UTC")

#: kind -> the ``dataType`` spellings of that kind (lower case). The one declarative table.
SPELLINGS: dict[DataKind, tuple[str, ...]] = {
    "string": ("string", "text", "payload", "str", "url", "uri", "keyword", "enum", "select", "country",
               "language", "locale", "tag", "tags", "time"),
    "email": ("email",),
    "phone": ("phone", "mobile", "phone_mobile"),
    "number": ("number", "float", "double", "decimal", "money", "amount", "numeric"),
    "integer": ("integer", "int", "long", "bigint"),
    "bool": ("bool", "boolean"),
    "date": ("date",),
    "datetime": ("datetime", "date-time", "date_time", "timestamp"),
    "any": (),
}

#: kind -> Arrow type of an exported (single) value.
ARROW_TYPES: dict[DataKind, pa.DataType] = {
    "string": pa.string(),
    "email": pa.string(),
    "phone": pa.string(),
    "number": pa.float64(),
    "integer": pa.int64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "datetime": TIMESTAMP,
    "any": pa.string(),
}

#: ``dataType`` spelling (lower case) -> kind, derived from ``SPELLINGS``.
KINDS: dict[str, DataKind] = {spelling: kind for kind, names in SPELLINGS.items() for spelling in names}


def data_kind(data_type: Any) -> DataKind:
    """The kind of a spec ``dataType`` (trimmed, case-insensitive); unknown or missing: ``"any"``."""
    return KINDS.get(str(data_type or "").strip().lower(), "any")


def arrow_type(data_type: Any) -> pa.DataType:
    """The Arrow type a single value of ``dataType`` is exported as."""
    return ARROW_TYPES[data_kind(data_type)]


def multivalue_limit(spec: Mapping[str, Any]) -> int:
    """The most values of a multi-valued field, or 0 for a single-valued one.

    Attribute specs call it ``multivalue``, event-parameter specs ``multiValue``; the first of
    the two that is present and not null is read. A number above 1 means a list of at most
    that many values; 0, 1, a boolean, null or anything that is not an integer means a single
    value.
    """
    for key in ("multivalue", "multiValue"):
        raw = spec.get(key)
        if raw is not None:
            break
    else:
        return 0
    if isinstance(raw, bool):
        return 0
    try:
        n = int(raw)
    except (TypeError, ValueError, OverflowError):
        return 0
    return n if n > 1 else 0


#: Strings read as true / false (after trimming, case-insensitive), for data values (ingest
#: validation, export coercion) and configuration flags alike. Blank is neither.
TRUE_STRINGS: frozenset[str] = frozenset({"1", "true", "t", "yes", "y", "on"})
FALSE_STRINGS: frozenset[str] = frozenset({"0", "false", "f", "no", "n", "off"})


def parse_bool(value: Any) -> bool | None:
    """``value`` as a boolean, or None when it is not one.

    True/False as themselves; the numbers 1 and 0; strings in ``TRUE_STRINGS`` /
    ``FALSE_STRINGS`` (trimmed, any case). Everything else, including None and blank
    strings, gives None: what that means (null, a default, an error) is the caller's choice.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):  # NaN is neither
        return True if value == 1 else False if value == 0 else None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in TRUE_STRINGS:
            return True
        if text in FALSE_STRINGS:
            return False
    return None
