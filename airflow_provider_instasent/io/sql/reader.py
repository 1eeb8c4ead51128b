"""Stream a query's result as Arrow record batches, holding one batch at a time.

PostgreSQL (psycopg2 or psycopg 3) gets a *named* (server-side) cursor: the server holds the
result and the client fetches ``batch_rows`` rows at a time. Other databases use
``fetchmany``, which streams where the driver does (DuckDB, SQLite) and buffers where it
does not.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa

from .database import database

__all__ = ["read_query", "rows_to_batch"]


#: Turns the values of a column Arrow cannot type on its own (mixed types) into an array.
Mixed = Callable[[Sequence[Any]], pa.Array]


def _as_text(values: Sequence[Any]) -> pa.Array:
    return pa.array([None if v is None else str(v) for v in values], pa.string())


def _column(values: Sequence[Any], mixed: Mixed) -> pa.Array:
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return mixed(values)


def rows_to_batch(rows: Sequence[Sequence[Any]], names: Sequence[str], mixed: Mixed | None = None
                  ) -> pa.RecordBatch:
    """DB-API rows (tuples) as a record batch, typed per column by Arrow's inference; a column
    Arrow cannot type goes to ``mixed`` (default: each value's ``str``; the ingest passes its
    coercion of Python values, so each bad value is reported per row)."""
    if not rows:
        return pa.RecordBatch.from_arrays([pa.nulls(0) for _ in names], names=list(names))
    columns = list(zip(*rows))
    return pa.RecordBatch.from_arrays([_column(col, mixed or _as_text) for col in columns], names=list(names))


class QueryReader:
    """Iterate ``batches``; ``server_side`` tells, afterwards, whether the cursor was named."""

    def __init__(self, db: Any, sql: str, parameters: Any = None, *, batch_rows: int = 10_000,
                 mixed: Mixed | None = None) -> None:
        self.db = database(db)
        self.mixed = mixed
        self.sql = sql
        self.parameters = parameters
        self.batch_rows = batch_rows
        self.server_side = False

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The result, ``batch_rows`` rows at a time.

        Raises:
            ValueError: the statement returned no result set (it is not a query).
        """
        with self.db.connection() as conn:
            psycopg = type(conn).__module__.startswith(("psycopg2", "psycopg"))
            cursor = None
            try:
                if psycopg:
                    cursor = conn.cursor(name=f"instasent_read_{uuid.uuid4().hex[:12]}")
                    cursor.itersize = self.batch_rows
                    self.server_side = True
                else:
                    cursor = conn.cursor()
                if self.parameters is None:
                    cursor.execute(self.sql)
                else:
                    cursor.execute(self.sql, self.parameters)
                names: list[str] | None = None
                while True:
                    rows = cursor.fetchmany(self.batch_rows)
                    if names is None:
                        if cursor.description is None:
                            raise ValueError("the query returned no result set (is it a SELECT?)")
                        names = [str(d[0]) for d in cursor.description]
                    if not rows:
                        break
                    yield rows_to_batch(rows, names, self.mixed)
            finally:
                if cursor is not None:
                    with contextlib.suppress(Exception):  # closing a failed named cursor can raise again
                        cursor.close()
                if psycopg and not self.db.borrowed:
                    with contextlib.suppress(Exception):
                        conn.rollback()


def read_query(db: Any, sql: str, parameters: Any = None, *, batch_rows: int = 10_000) -> Iterator[pa.RecordBatch]:
    """The batches of ``sql`` on ``db`` (a hook, a DB-API or SQLAlchemy connection)."""
    return QueryReader(db, sql, parameters, batch_rows=batch_rows).batches()
