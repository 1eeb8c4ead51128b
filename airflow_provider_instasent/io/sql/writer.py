"""Load record batches into a SQL table: staging table, then one atomic swap.

Every write disposition first loads a *staging* table (same schema, a random name next to
the target) with the database's bulk loader (``dialects``), then applies it to the
target in one transaction (docs/adr/0003-atomic-replace.md):

* ``replace``: the staging table takes the target's place (``DROP`` + ``RENAME``; MySQL: one
  ``RENAME TABLE``), so a reader sees the old table or the new one, never a half-loaded or
  missing table;
* ``append``: ``INSERT INTO target SELECT ... FROM staging``;
* ``merge``: ``DELETE FROM target WHERE key IN (SELECT key FROM staging)`` then the insert:
  an upsert on ``key``. A row whose key is null could never be matched (it would be added
  again by every merge): ``MergeKeyError``, nothing committed.

For ``append``/``merge`` a target that does not exist yet is created (the staging table is
renamed), and columns the target lacks (a new custom attribute) are added first. A failure
at any point leaves the target as it was and drops the staging table.

``write(..., also=...)`` adds statements to that final transaction: an incremental export
advances its watermark there, so the target and its watermark commit together or not at all.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from ...client.errors import InstasentConfigError, InstasentError
from .database import Database, database
from .identifiers import TableName
from .session import bind, qmark_placeholder

#: Statements run in the final transaction: (SQL with ``?`` markers, parameters)
Statements = Sequence[tuple[str, Sequence[Any]]]

__all__ = ["WRITE_DISPOSITIONS", "MergeKeyError", "SqlWriteResult", "SqlWriter", "WriteDisposition", "write_sql"]

log = logging.getLogger(__name__)

WriteDisposition = Literal["replace", "append", "merge"]
WRITE_DISPOSITIONS: tuple[str, ...] = ("replace", "append", "merge")


class MergeKeyError(InstasentError, ValueError):
    """A ``merge`` whose rows lack the key (null): refused before anything is committed."""


@dataclass
class SqlWriteResult:
    table: str
    dialect: str
    write_disposition: str
    rows: int
    seconds: float
    #: field name -> the column it is stored in, for names the database could not keep as they are
    renamed_columns: dict[str, str] = field(default_factory=dict)
    #: values changed to fit the database (PostgreSQL: NUL characters removed from text)
    values_cleaned: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "dialect": self.dialect, "write_disposition": self.write_disposition,
                "rows": self.rows, "seconds": round(self.seconds, 3), "renamed_columns": self.renamed_columns,
                "values_cleaned": self.values_cleaned}


class SqlWriter:
    """Writes one stream of batches into ``table`` (see the module doc).

    Args:
        db: a common-sql ``DbApiHook``, a DB-API or SQLAlchemy connection (see ``database``).
        table: ``table`` or ``schema.table``.
        schema: the Arrow schema of every batch.
        write_disposition: ``replace``, ``append`` or ``merge``.
        key: the merge key (a column of ``schema``).
        dialect: force a dialect instead of detecting it.
    """

    def __init__(
        self,
        db: Any,
        table: str,
        schema: pa.Schema,
        *,
        write_disposition: str = "replace",
        key: str | None = None,
        dialect: str | None = None,
        logger: Any = None,
    ) -> None:
        if write_disposition not in WRITE_DISPOSITIONS:
            raise InstasentConfigError(
                f"write_disposition must be one of {', '.join(WRITE_DISPOSITIONS)}; got {write_disposition!r}"
            )
        self.db: Database = Database(db, dialect=dialect) if dialect else database(db)
        self.sql = self.db.dialect
        self.target = TableName.parse(table)
        self.schema = schema
        self.disposition = write_disposition
        if write_disposition == "merge" and (not key or key not in schema.names):
            raise InstasentConfigError(f"merge needs a key column that is in the schema; got {key!r}")
        self.key = key
        self.log = logger or log
        for name in schema.names:
            self.sql.qi(name)  # refuse unusable column names up front
        #: the stored column of each field (long names shortened deterministically, see Dialect.column_name)
        self.columns = [self.sql.column_name(n) for n in schema.names]
        self.renamed = {n: c for n, c in zip(schema.names, self.columns) if n != c}
        if len({c.casefold() for c in self.columns}) != len(self.columns):
            raise InstasentConfigError(f"two fields map to the same column of {table!r}: {self.columns}")
        if self.renamed:
            self.log.warning("columns longer than %s bytes are stored as %s", self.sql.max_identifier_bytes,
                             self.renamed)
        self.values_cleaned = 0
        self.staging = self.target.with_name(f"{self.target.name[: 63 - 14]}__stg_{secrets.token_hex(4)}")
        self.rows = 0
        self._also: Callable[[], Statements] | None = None

    @property
    def hook(self) -> Any:
        return self.db.target

    @property
    def dialect(self) -> str:
        return self.sql.name

    # -- steps ---------------------------------------------------------------------------------
    def _ddl(self, conn: Any, sql: str) -> None:
        """A statement in its own committed transaction (used when the load has its own connections)."""
        cur = conn.cursor()
        self.sql.begin(cur)
        cur.execute(sql)
        self.sql.commit(conn, cur)

    def _drop_staging(self) -> None:
        try:
            with self.db.connection() as conn:
                saved = self.sql.prepare(conn)
                self._ddl(conn, f"DROP TABLE IF EXISTS {self.sql.qt(self.staging)}")
                self.sql.restore(conn, saved)
        except Exception:
            self.log.warning("could not drop the staging table %s", self.staging, exc_info=True)

    def _drop_leftovers(self, conn: Any) -> None:
        """Staging tables a killed run left behind (where the dialect can tell them apart)."""
        cur = conn.cursor()
        for old in self.sql.leftover_staging(cur, self.target):
            self.log.warning("dropping %s, left by an earlier run that did not finish", old)
            self._ddl(conn, f"DROP TABLE IF EXISTS {self.sql.qt(old)}")

    def _apply(self, conn: Any) -> None:
        """Swap or merge the staging table into the target, in one transaction."""
        sql, cur = self.sql, conn.cursor()
        try:
            sql.begin(cur)
            sql.lock_target(cur, self.target)  # concurrent writers of one target apply one at a time
            existing = sql.existing_columns(conn, cur, self.target)
            target, staging = sql.qt(self.target), sql.qt(self.staging)
            if existing is None or self.disposition == "replace":
                sql.replace(cur, self.staging, self.target, exists=existing is not None, schema=self.schema,
                            columns=self.columns)
            else:
                have = {c.casefold() for c in existing}
                for column, f in zip(self.columns, self.schema):
                    if column.casefold() not in have:
                        self.log.info("adding column %s to %s", column, self.target)
                        cur.execute(f"ALTER TABLE {target} ADD COLUMN {sql.qi(column)} {sql.sql_type(f.type)}")
                cols = ", ".join(sql.qi(c) for c in self.columns)
                if self.disposition == "merge":
                    assert self.key is not None
                    k = sql.qi(self.columns[self.schema.names.index(self.key)])
                    cur.execute(f"SELECT COUNT(*) FROM {staging} WHERE {k} IS NULL")
                    nulls = int(cur.fetchone()[0])
                    if nulls:  # no DELETE ever matches them: every merge would add them again
                        raise MergeKeyError(
                            f"merge into {self.target}: {nulls} row(s) have no {self.key} (null), so they could "
                            f"never be matched and would pile up on every merge; nothing committed")
                    cur.execute(f"DELETE FROM {target} WHERE {k} IN (SELECT {k} FROM {staging})")
                cur.execute(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {staging}")
                cur.execute(f"DROP TABLE {staging}")
            if self._also is not None:
                placeholder = qmark_placeholder(self.db)
                for statement, parameters in self._also():
                    cur.execute(bind(statement, placeholder), list(parameters))
            sql.commit(conn, cur)
        except BaseException:
            sql.rollback(conn, cur)
            raise

    def _load_all(self, conn: Any, batches: Iterable[pa.RecordBatch]) -> None:
        loader = self.sql.loader(conn, self.staging, self.columns, self.db.placeholder)
        for batch in batches:
            if batch.schema.names != self.schema.names:
                raise InstasentConfigError("a batch does not match the export schema")
            if batch.num_rows:
                loader.load(batch)
                self.rows += batch.num_rows
        loader.finish()
        self.values_cleaned += loader.cleaned

    # -- public --------------------------------------------------------------------------------
    def write(self, batches: Iterable[pa.RecordBatch], *, also: Callable[[], Statements] | None = None
              ) -> SqlWriteResult:
        """Load every batch into the staging table, then apply it to the target atomically.

        ``also``: called after the last batch, it gives statements (``?`` markers) that run in
        the final transaction, committed with the target or not at all.
        """
        self._also = also
        started = time.monotonic()
        sql = self.sql
        create = sql.create_table_sql(self.staging, self.schema)
        try:
            with self.db.connection() as conn:
                saved = sql.prepare(conn)
                try:
                    if sql.one_connection and not sql.explicit_transactions:
                        # PostgreSQL: staging, load and swap in one transaction; a failure
                        # takes the staging table with it.
                        cur = conn.cursor()
                        try:
                            cur.execute(create)
                            self._load_all(conn, batches)
                        except BaseException:
                            sql.rollback(conn, cur)
                            raise
                        self._apply(conn)
                    else:
                        self._drop_leftovers(conn)
                        self._ddl(conn, create)
                        try:
                            if sql.one_connection:
                                self._load_all(conn, batches)
                            else:
                                self._load_generic(conn, batches)
                            self._apply(conn)
                        except BaseException:
                            sql.rollback(conn)
                            self._drop_staging()
                            raise
                finally:
                    sql.restore(conn, saved)
        finally:
            _close(batches)  # stop a producer thread at once if the load failed
        seconds = time.monotonic() - started
        self.log.info("loaded %d rows into %s (%s, %s) in %.1fs", self.rows, self.target, self.dialect,
                      self.disposition, seconds)
        if self.values_cleaned:
            self.log.warning("%d value(s) held characters %s cannot store and were cleaned (NUL removed)",
                             self.values_cleaned, self.dialect)
        return SqlWriteResult(str(self.target), self.dialect, self.disposition, self.rows, seconds,
                              dict(self.renamed), self.values_cleaned)

    def _load_generic(self, conn: Any, batches: Iterable[pa.RecordBatch]) -> None:
        """``executemany`` databases: each batch in its own committed transaction."""
        loader = self.sql.loader(conn, self.staging, self.columns, self.db.placeholder)
        for batch in batches:
            if batch.schema.names != self.schema.names:
                raise InstasentConfigError("a batch does not match the export schema")
            if not batch.num_rows:
                continue
            cur = conn.cursor()
            self.sql.begin(cur)
            loader.load(batch)
            self.sql.commit(conn, cur)
            self.rows += batch.num_rows
        loader.finish()
        self.values_cleaned += loader.cleaned


def _close(iterable: Any) -> None:
    close = getattr(iterable, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


def write_sql(
    batches: Iterable[pa.RecordBatch],
    db: Any,
    table: str,
    schema: pa.Schema,
    *,
    write_disposition: str = "replace",
    key: str | None = None,
    logger: Any = None,
) -> SqlWriteResult:
    """Write ``batches`` (all with ``schema``) into ``table`` of ``db`` (a hook or a connection)."""
    return SqlWriter(db, table, schema, write_disposition=write_disposition, key=key, logger=logger).write(batches)
