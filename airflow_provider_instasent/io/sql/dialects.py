"""What differs between databases, in one class per database (common-sql's dialect idea).

A ``Dialect`` knows its identifier quote, its column types, how to open and close a
transaction, how to list a table's columns without aborting a transaction, how to swap a
staging table in, and how to bulk-load Arrow batches (``Dialect.loader``):

=========== ================================================================================
postgres    ``COPY ... FROM STDIN (FORMAT csv)`` from an in-memory CSV per batch (Arrow's C++
            writer; lists become array literals, vectorised); psycopg2 or psycopg 3
duckdb      Arrow ingestion (the batch is registered, ``INSERT ... SELECT`` reads it), one
            commit per DuckDB row group (``DUCKDB_ROW_GROUP`` rows)
sqlite      ``executemany``; explicit ``BEGIN``/``COMMIT`` (DDL included)
mysql       ``executemany``; backtick quotes; ``RENAME TABLE`` swaps atomically
generic     ``executemany`` with the connection's placeholder
=========== ================================================================================

Nothing here opens a connection: ``Database`` does.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import secrets
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, TypeAlias

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .identifiers import TableName, quote_identifier

__all__ = ["DIALECTS", "DUCKDB_ROW_GROUP", "Dialect", "Paramstyle", "bind_marker", "dialect_named"]

#: The DB-API ``paramstyle`` values (PEP 249) plus ``dollar`` (``$1``, asyncpg and friends).
Paramstyle: TypeAlias = Literal["pyformat", "format", "qmark", "named", "numeric", "dollar"]


def bind_marker(style: Paramstyle, name: str, position: int) -> str:
    """The placeholder of bind parameter ``name`` (1-based ``position``) in ``style``."""
    return {
        "pyformat": f"%({name})s",
        "format": "%s",
        "qmark": "?",
        "named": f":{name}",
        "numeric": f":{position}",
        "dollar": f"${position}",
    }[style]

#: Rows per DuckDB row group (its default ``ROW_GROUP_SIZE``): the unit it compresses and writes.
DUCKDB_ROW_GROUP = 122_880


class Loader:
    """Bulk-loads batches into one table on one connection (the generic ``executemany`` path)."""

    def __init__(self, dialect: Dialect, conn: Any, table: str, columns: Sequence[str], placeholder: str) -> None:
        self.dialect = dialect
        self.conn = conn
        self.table = table
        self.columns = list(columns)
        self.column_list = ", ".join(dialect.qi(c) for c in columns)
        self.placeholder = placeholder
        #: values the database could not hold as they were and that were cleaned (see the dialect)
        self.cleaned = 0

    def load(self, batch: pa.RecordBatch) -> None:
        rows = self.dialect.python_rows(batch)
        sql = (f"INSERT INTO {self.table} ({self.column_list}) "
               f"VALUES ({', '.join([self.placeholder] * len(self.columns))})")
        cur = self.conn.cursor()
        try:
            cur.executemany(sql, rows)
        finally:
            with contextlib.suppress(Exception):
                cur.close()

    def finish(self) -> None:
        """Called once after the last batch (DuckDB commits its last row group here)."""


class Dialect:
    """The generic dialect (ANSI SQL, ``executemany``); subclasses override what differs."""

    name: ClassVar[str] = "generic"
    quote: ClassVar[str] = '"'
    placeholder: ClassVar[str] = "%s"
    #: keep one connection for the whole write (the load and the swap in one session)
    one_connection: ClassVar[bool] = False
    #: ``BEGIN``/``COMMIT`` statements (not the DB-API's implicit transactions)
    explicit_transactions: ClassVar[bool] = False
    #: the longest identifier, in bytes, the database keeps without truncating it (None: no limit we know)
    max_identifier_bytes: ClassVar[int | None] = None
    _types: ClassVar[dict[str, str]] = {
        "string": "TEXT", "float": "DOUBLE PRECISION", "int": "BIGINT", "bool": "BOOLEAN", "date": "DATE",
        "timestamp": "TIMESTAMP", "list": "TEXT",
    }

    # -- identifiers and DDL ---------------------------------------------------------------------
    def qi(self, name: str) -> str:
        return quote_identifier(name, self.quote)

    def qt(self, table: TableName) -> str:
        if table.schema:
            return f"{self.qi(table.schema)}.{self.qi(table.name)}"
        return self.qi(table.name)

    def column_name(self, name: str) -> str:
        """The column a field is stored in: ``name``, or, past ``max_identifier_bytes``, its
        deterministic short form (the longest prefix that fits, ``_`` and 8 hex digits of its
        SHA-1), the same on every write, so two long names never collide or truncate silently."""
        limit = self.max_identifier_bytes
        raw = name.encode()
        if limit is None or len(raw) <= limit:
            return name
        digest = hashlib.sha1(raw).hexdigest()[:8]
        head = raw[: limit - 9].decode("utf-8", "ignore")
        return f"{head}_{digest}"

    def lock_target(self, cur: Any, table: TableName) -> None:
        """Serialise the writers of ``table`` until the transaction ends (no-op: one writer at a time)."""

    def leftover_staging(self, cur: Any, table: TableName) -> list[TableName]:
        """Staging tables of ``table`` that a killed run left and that no live run can own.

        Only where a database file has one writer process at a time (DuckDB): elsewhere a
        staging table may belong to a run in progress, so none is reported.
        """
        return []

    def sql_type(self, t: pa.DataType) -> str:
        """The SQL column type of an Arrow type (see the mapping in docs/export.md)."""
        if pa.types.is_list(t):
            return self._list_type(t)
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return self._types["string"]
        if pa.types.is_floating(t):
            return self._types["float"]
        if pa.types.is_integer(t):
            return self._types["int"]
        if pa.types.is_boolean(t):
            return self._types["bool"]
        if pa.types.is_date(t):
            return self._types["date"]
        if pa.types.is_timestamp(t):
            return self._types["timestamp"]
        return "TEXT"

    def _list_type(self, t: pa.ListType) -> str:
        return self._types["list"]  # a JSON array

    def create_table_sql(self, table: TableName, schema: pa.Schema) -> str:
        cols = ",\n  ".join(f"{self.qi(self.column_name(f.name))} {self.sql_type(f.type)}" for f in schema)
        return f"CREATE TABLE {self.qt(table)} (\n  {cols}\n)"

    # -- transactions --------------------------------------------------------------------------
    def prepare(self, conn: Any) -> Any:
        """Make a fresh connection ready for explicit transactions; returns what to restore."""
        with contextlib.suppress(Exception):
            if getattr(conn, "autocommit", False) is True:
                conn.autocommit = False
                return True
        return None

    def restore(self, conn: Any, saved: Any) -> None:
        if saved is not None:
            with contextlib.suppress(Exception):
                conn.autocommit = saved

    def begin(self, cur: Any) -> None:
        if self.explicit_transactions:
            cur.execute("BEGIN")

    def commit(self, conn: Any, cur: Any) -> None:
        if self.explicit_transactions:
            cur.execute("COMMIT")
        else:
            conn.commit()

    def rollback(self, conn: Any, cur: Any = None) -> None:
        with contextlib.suppress(Exception):
            if self.explicit_transactions:
                (cur or conn.cursor()).execute("ROLLBACK")
            else:
                conn.rollback()

    # -- introspection ---------------------------------------------------------------------------
    def existing_columns(self, conn: Any, cur: Any, table: TableName) -> list[str] | None:
        """The table's columns, or None when it does not exist (never aborts a transaction)."""
        probe = conn.cursor()
        try:
            probe.execute(f"SELECT * FROM {self.qt(table)} WHERE 1=0")
            return [d[0] for d in probe.description or []]
        except Exception:
            return None
        finally:
            with contextlib.suppress(Exception):
                probe.close()

    # -- the swap ------------------------------------------------------------------------------
    def replace(self, cur: Any, staging: TableName, target: TableName, exists: bool,
                schema: pa.Schema | None = None, columns: Sequence[str] = ()) -> None:
        """Put ``staging`` in the place of ``target`` inside the open transaction."""
        if exists:
            cur.execute(f"DROP TABLE {self.qt(target)}")
        cur.execute(f"ALTER TABLE {self.qt(staging)} RENAME TO {self.qi(target.name)}")

    # -- loading -------------------------------------------------------------------------------
    def python_rows(self, batch: pa.RecordBatch) -> list[tuple[Any, ...]]:
        """Plain Python rows: dates/timestamps as ISO text, lists as JSON."""
        return list(zip(*(self._python_values(col) for col in batch.columns)))

    def _python_values(self, col: pa.Array) -> list[Any]:
        t = col.type
        if pa.types.is_list(t):
            return [None if v is None else orjson.dumps(v, default=str).decode() for v in col.to_pylist()]
        if pa.types.is_timestamp(t):
            return [None if v is None else v.isoformat(timespec="milliseconds") for v in col.to_pylist()]
        if pa.types.is_date(t):
            return [None if v is None else v.isoformat() for v in col.to_pylist()]
        return col.to_pylist()

    def loader(self, conn: Any, table: TableName, columns: Sequence[str], placeholder: str | None = None) -> Loader:
        return Loader(self, conn, self.qt(table), columns, placeholder or self.placeholder)


# ----------------------------------------------------------------------------------------------
# PostgreSQL
# ----------------------------------------------------------------------------------------------
def _pg_array_literal(arr: pa.Array) -> pa.Array:
    """list<...> -> PostgreSQL array literal text (``{"a","b"}``), vectorised with Arrow compute."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    assert isinstance(arr, pa.ListArray)
    values = arr.values
    if not pa.types.is_string(values.type):
        is_bool = pa.types.is_boolean(values.type)
        values = pc.if_else(values, "t", "f") if is_bool else pc.cast(values, pa.string())
    escaped = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
    quoted = pc.binary_join_element_wise('"', escaped, '"', "")
    quoted = pc.fill_null(quoted, "NULL")
    offsets = arr.offsets
    if arr.offset:  # a sliced array: re-base the offsets on the sliced values
        offsets = pc.subtract(offsets, offsets[0])
    rebuilt = pa.ListArray.from_arrays(offsets, quoted, mask=arr.is_null())
    joined = pc.binary_join(rebuilt, ",")
    return pc.binary_join_element_wise("{", joined, "}", "")


def _pg_timestamp_text(arr: pa.Array) -> pa.Array:
    """timestamp[ms, UTC] -> ``YYYY-MM-DD HH:MM:SS.sssZ`` text.

    Formatting the UTC wall time and appending ``Z`` is much faster than Arrow's CSV writer
    going through the time-zone database (docs/performance.md), and does not depend on the
    session's TimeZone.
    """
    assert isinstance(arr.type, pa.TimestampType)
    naive = pc.cast(arr, pa.timestamp(arr.type.unit))
    return pc.binary_join_element_wise(pc.cast(naive, pa.string()), "Z", "")


def _without_nul(col: pa.Array) -> tuple[pa.Array, int]:
    """PostgreSQL cannot store U+0000 in text: drop that character, and count the values changed."""
    text = col.values if pa.types.is_list(col.type) else col
    if not pa.types.is_string(text.type):
        return col, 0
    has = pc.match_substring(text, "\x00")
    changed = pc.sum(has).as_py() or 0
    if not changed:
        return col, 0
    clean = pc.replace_substring(text, "\x00", "")
    if pa.types.is_list(col.type):
        offsets = col.offsets
        if col.offset:
            offsets = pc.subtract(offsets, offsets[0])
        return pa.ListArray.from_arrays(offsets, clean, mask=col.is_null()), changed
    return clean, changed


def postgres_csv(batch: pa.RecordBatch) -> tuple[bytes, int]:
    """One batch as the CSV that ``COPY ... (FORMAT csv)`` reads, and how many values lost a
    NUL character (which PostgreSQL text cannot hold: one such value must not fail the export)."""
    columns = []
    cleaned = 0
    for col in batch.columns:
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        col, n = _without_nul(col)
        cleaned += n
        if pa.types.is_list(col.type):
            col = _pg_array_literal(col)
        elif pa.types.is_timestamp(col.type) and col.type.tz is not None:
            col = _pg_timestamp_text(col)
        columns.append(col)
    table = pa.Table.from_arrays(columns, names=batch.schema.names)
    sink = pa.BufferOutputStream()  # native stream: the writer runs without the GIL
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="all_valid",
                                                   batch_size=max(1024, batch.num_rows)))
    return bytes(sink.getvalue().to_pybytes()), cleaned


class _CopyLoader(Loader):
    def load(self, batch: pa.RecordBatch) -> None:
        data, cleaned = postgres_csv(batch)
        self.cleaned += cleaned
        sql = f"COPY {self.table} ({self.column_list}) FROM STDIN WITH (FORMAT csv)"
        cur = self.conn.cursor()
        if hasattr(cur, "copy_expert"):  # psycopg2
            cur.copy_expert(sql, io.BytesIO(data), size=1 << 20)
        else:  # psycopg 3
            with cur.copy(sql) as copy:
                copy.write(data)


class Postgres(Dialect):
    name = "postgres"
    one_connection = True
    max_identifier_bytes = 63  # NAMEDATALEN - 1: longer names are truncated silently
    _types = {**Dialect._types, "timestamp": "TIMESTAMPTZ"}
    #: our DDL type -> what ``format_type`` answers for it
    _CATALOG_TYPES = {"TEXT": "text", "DOUBLE PRECISION": "double precision", "BIGINT": "bigint",
                      "BOOLEAN": "boolean", "DATE": "date", "TIMESTAMPTZ": "timestamp with time zone"}

    def _list_type(self, t: pa.ListType) -> str:
        return self.sql_type(t.value_type) + "[]"

    def lock_target(self, cur: Any, table: TableName) -> None:
        """A transaction-level advisory lock keyed by the target: two exports into one table
        (a ``merge`` and a ``merge``, say) apply one after the other, never interleaved."""
        key = int.from_bytes(hashlib.sha1(f"instasent:{self.qt(table)}".encode()).digest()[:8], "big", signed=True)
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (key,))

    def _catalog_type(self, sql_type: str) -> str:
        if sql_type.endswith("[]"):
            return self._catalog_type(sql_type[:-2]) + "[]"
        return self._CATALOG_TYPES.get(sql_type, sql_type.lower())

    def replace(self, cur: Any, staging: TableName, target: TableName, exists: bool,
                schema: pa.Schema | None = None, columns: Sequence[str] = ()) -> None:
        """Same columns and types: ``DELETE`` + ``INSERT`` in the transaction, so a reader of any
        isolation level sees the old rows or the new ones (a REPEATABLE READ snapshot taken before
        keeps seeing the old rows). A changed shape swaps the tables (``DROP`` + ``RENAME``): a
        READ COMMITTED reader waits and then sees the new table, while a REPEATABLE READ
        snapshot older than the swap sees it empty (docs/adr/0003-atomic-replace.md)."""
        if exists and schema is not None:
            cur.execute(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a "
                "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                (self.qt(target),),
            )
            have = [(r[0], r[1]) for r in cur.fetchall()]
            want = [(c, self._catalog_type(self.sql_type(f.type))) for c, f in zip(columns, schema)]
            if have == want:
                cols = ", ".join(self.qi(c) for c in columns)
                cur.execute(f"DELETE FROM {self.qt(target)}")
                cur.execute(f"INSERT INTO {self.qt(target)} ({cols}) SELECT {cols} FROM {self.qt(staging)}")
                cur.execute(f"DROP TABLE {self.qt(staging)}")
                return
        super().replace(cur, staging, target, exists)

    def existing_columns(self, conn: Any, cur: Any, table: TableName) -> list[str] | None:
        cur.execute(
            "SELECT a.attname FROM pg_catalog.pg_attribute a WHERE a.attrelid = to_regclass(%s) "
            "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (self.qt(table),),
        )
        return [r[0] for r in cur.fetchall()] or None

    def loader(self, conn: Any, table: TableName, columns: Sequence[str], placeholder: str | None = None) -> Loader:
        return _CopyLoader(self, conn, self.qt(table), columns, placeholder or self.placeholder)


# ----------------------------------------------------------------------------------------------
# DuckDB
# ----------------------------------------------------------------------------------------------
class _ArrowLoader(Loader):
    """Inserts batches into DuckDB, committing each time a row group is full.

    DuckDB compresses and writes a transaction's row groups when it commits (it buffers up to
    five before that). Committing at each full row group (the batch is split there) costs the
    CPU of one big transaction and leaves at most one row group to write after the last batch;
    a commit per batch costs more, one transaction leaves up to five (figures in
    docs/performance.md). A failure rolls back the open transaction only.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.uncommitted = 0
        self.conn.execute("BEGIN")

    def load(self, batch: pa.RecordBatch) -> None:
        while batch.num_rows:
            take = min(batch.num_rows, DUCKDB_ROW_GROUP - self.uncommitted)
            part, batch = batch.slice(0, take), batch.slice(take)
            view = f"__instasent_batch_{secrets.token_hex(4)}"
            self.conn.register(view, pa.Table.from_batches([part]))
            try:
                self.conn.execute(
                    f"INSERT INTO {self.table} ({self.column_list}) SELECT {self.column_list} FROM {view}")
            finally:
                self.conn.unregister(view)
            self.uncommitted += take
            if self.uncommitted >= DUCKDB_ROW_GROUP:
                self.conn.execute("COMMIT")
                self.conn.execute("BEGIN")
                self.uncommitted = 0

    def finish(self) -> None:
        self.conn.execute("COMMIT")


class DuckDB(Dialect):
    name = "duckdb"
    placeholder = "?"
    one_connection = True
    explicit_transactions = True
    _types = {**Dialect._types, "string": "VARCHAR", "float": "DOUBLE", "timestamp": "TIMESTAMPTZ"}

    def _list_type(self, t: pa.ListType) -> str:
        return self.sql_type(t.value_type) + "[]"

    def leftover_staging(self, cur: Any, table: TableName) -> list[TableName]:
        # DuckDB locks its file for one read-write process: a staging table committed by an
        # earlier process of ours (killed before it could drop it) cannot be in use now.
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = COALESCE(?, current_schema()) "
            "AND starts_with(table_name, ?)",
            [table.schema, f"{table.name[: 63 - 14]}__stg_"],
        )
        return [table.with_name(r[0]) for r in cur.fetchall()]

    def existing_columns(self, conn: Any, cur: Any, table: TableName) -> list[str] | None:
        cur.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "AND table_schema = COALESCE(?, current_schema()) ORDER BY ordinal_position",
            [table.name, table.schema],
        )
        return [r[0] for r in cur.fetchall()] or None

    def loader(self, conn: Any, table: TableName, columns: Sequence[str], placeholder: str | None = None) -> Loader:
        return _ArrowLoader(self, conn, self.qt(table), columns, placeholder or self.placeholder)


# ----------------------------------------------------------------------------------------------
# SQLite, MySQL
# ----------------------------------------------------------------------------------------------
class SQLite(Dialect):
    name = "sqlite"
    placeholder = "?"
    explicit_transactions = True
    _types = {**Dialect._types, "float": "REAL", "int": "INTEGER", "bool": "INTEGER", "date": "TEXT",
              "timestamp": "TEXT"}

    def prepare(self, conn: Any) -> Any:
        saved = getattr(conn, "isolation_level", None)
        conn.isolation_level = None  # explicit BEGIN/COMMIT (DDL included)
        return ("isolation_level", saved)

    def restore(self, conn: Any, saved: Any) -> None:
        with contextlib.suppress(Exception):
            conn.isolation_level = saved[1]

    def replace(self, cur: Any, staging: TableName, target: TableName, exists: bool,
                schema: pa.Schema | None = None, columns: Sequence[str] = ()) -> None:
        """``DROP`` + ``RENAME``, the rename with ``legacy_alter_table``: SQLite would otherwise
        refuse it while a view names the dropped target. A view resolves its tables when it is
        queried, so views on the target keep working and read the new table."""
        cur.execute("PRAGMA legacy_alter_table")
        saved = int(cur.fetchone()[0])
        cur.execute("PRAGMA legacy_alter_table = ON")
        try:
            super().replace(cur, staging, target, exists, schema, columns)
        finally:
            cur.execute(f"PRAGMA legacy_alter_table = {saved}")

    def existing_columns(self, conn: Any, cur: Any, table: TableName) -> list[str] | None:
        pragma = f"PRAGMA {self.qi(table.schema)}.table_info" if table.schema else "PRAGMA table_info"
        cur.execute(f"{pragma}({self.qi(table.name)})")
        return [r[1] for r in cur.fetchall()] or None

    def _python_values(self, col: pa.Array) -> list[Any]:
        if pa.types.is_boolean(col.type):
            return [None if v is None else int(v) for v in col.to_pylist()]
        return super()._python_values(col)


class MySQL(Dialect):
    name = "mysql"
    quote = "`"
    _types = {**Dialect._types, "string": "LONGTEXT", "float": "DOUBLE", "timestamp": "DATETIME(3)"}

    def replace(self, cur: Any, staging: TableName, target: TableName, exists: bool,
                schema: pa.Schema | None = None, columns: Sequence[str] = ()) -> None:
        if exists:  # one RENAME TABLE swaps both names atomically
            old = target.with_name(f"{target.name[:49]}__old_{secrets.token_hex(4)}")
            cur.execute(f"RENAME TABLE {self.qt(target)} TO {self.qt(old)}, {self.qt(staging)} TO {self.qt(target)}")
            cur.execute(f"DROP TABLE {self.qt(old)}")
        else:
            cur.execute(f"RENAME TABLE {self.qt(staging)} TO {self.qt(target)}")

    def _python_values(self, col: pa.Array) -> list[Any]:
        if pa.types.is_timestamp(col.type):
            return [None if v is None else v.replace(tzinfo=None).isoformat(sep=" ", timespec="milliseconds")
                    for v in col.to_pylist()]
        return super()._python_values(col)


DIALECTS: dict[str, Dialect] = {d.name: d for d in (Dialect(), Postgres(), DuckDB(), SQLite(), MySQL())}


def dialect_named(name: str) -> Dialect:
    """The dialect called ``name`` (``postgres``, ``duckdb``, ``sqlite``, ``mysql``, ``generic``)."""
    aliases = {"postgresql": "postgres", "pg": "postgres", "sqlite3": "sqlite", "mariadb": "mysql"}
    return DIALECTS.get(aliases.get(name.lower(), name.lower()), DIALECTS["generic"])
