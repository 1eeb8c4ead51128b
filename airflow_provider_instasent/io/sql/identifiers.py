"""SQL identifiers: one grammar for table names, column names and shard sources.

* ``TableName``: a table the package creates or writes (an export target, a rejects
  table, a state table): ``table`` or ``schema.table``, each part a plain identifier. Nothing
  else is accepted, so a table name can never carry SQL.
* ``quote_identifier``: any column name (they come from the API's specs) quoted as one
  identifier, embedded quotes doubled.
* ``check_identifier`` / ``source_sql``: a user's *source* table or key column for SQL
  shards: plain parts as above, or double-quoted parts (``"My Col"``); a query is wrapped as
  a sub-query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...client.errors import InstasentConfigError

__all__ = ["TableName", "check_identifier", "quote_identifier", "source_sql"]

#: A plain identifier part: a letter or underscore, then letters, digits, ``_`` or ``$``; at
#: most 63 characters (PostgreSQL's limit, the lowest of the databases we write to).
PLAIN_PART = r"[A-Za-z_][A-Za-z0-9_$]{0,62}"
QUOTED_PART = r'"(?:[^"]|"")+"'
_TABLE = re.compile(rf"\A{PLAIN_PART}(?:\.{PLAIN_PART})?\Z")
_SOURCE = re.compile(rf"\A(?:{PLAIN_PART}|{QUOTED_PART})(?:\.(?:{PLAIN_PART}|{QUOTED_PART}))*\Z")


@dataclass(frozen=True)
class TableName:
    """A validated ``table`` or ``schema.table`` name."""

    name: str
    schema: str | None = None

    @classmethod
    def parse(cls, value: str) -> TableName:
        """Validate a target table name; refuse anything that is not plain identifiers.

        Accepted: ``table`` or ``schema.table`` where each part is a letter or underscore
        followed by letters, digits, underscores or ``$`` (at most 63 characters). Quotes,
        spaces, semicolons, comments and the like are refused.
        """
        if not isinstance(value, str):
            raise InstasentConfigError(f"table must be a string, got {type(value).__name__}")
        text = value.strip()
        if not _TABLE.match(text):
            raise InstasentConfigError(
                f"invalid table name {value!r}: use 'table' or 'schema.table' with letters, digits and "
                "underscores only (starting with a letter or underscore, at most 63 characters each)"
            )
        parts = text.split(".")
        return cls(parts[-1], parts[0] if len(parts) == 2 else None)

    def with_name(self, name: str) -> TableName:
        return TableName.parse(f"{self.schema}.{name}" if self.schema else name)

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


def quote_identifier(name: str, quote: str = '"') -> str:
    """Quote one identifier, doubling any embedded quote character.

    Works for any name: the quoted form is always a single identifier, so it cannot end the
    identifier early and inject SQL. NUL characters, which no database accepts in
    identifiers, are refused.
    """
    if not isinstance(name, str) or not name:
        raise InstasentConfigError("an identifier must be a non-empty string")
    if "\x00" in name:
        raise InstasentConfigError(f"invalid identifier {name!r}: contains NUL")
    return quote + name.replace(quote, quote * 2) + quote


def check_identifier(text: str, what: str) -> str:
    """``text`` if it is a (possibly dotted) plain or double-quoted identifier, else an error."""
    if not isinstance(text, str) or not _SOURCE.match(text):
        raise InstasentConfigError(
            f"{what} {text!r} is not a plain or double-quoted SQL identifier; quote it (\"My Col\") "
            "or select it under a simple alias in a source query"
        )
    return text


def source_sql(source: str) -> str:
    """A table name as it is, or a query (``SELECT``/``WITH``/``VALUES``) as a sub-query."""
    text = source.strip().rstrip(";").strip()
    if not text:
        raise InstasentConfigError("empty SQL source")
    if re.match(r"^(select|with|values)\b", text, re.IGNORECASE) or (text.startswith("(") and text.endswith(")")):
        inner = text[1:-1] if text.startswith("(") and text.endswith(")") else text
        return f"({inner}) AS _shard_src"
    return check_identifier(text, "table")
