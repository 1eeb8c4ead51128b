"""A state database held open for one run: the helper of every engine that keeps state in SQL.

The sync keeps its per-row state (``sync/store.py``) and the export its watermarks
(``export/watermark.py``) in small tables of a database the caller chooses: a DuckDB file
given as a path (the embedded default of notebooks and the demo), or anything ``database``
takes (a common-sql hook, a DB-API or SQLAlchemy connection). ``open_database`` opens it and
``Session`` (``open_session``) holds one connection for the run, with ``?`` placeholders and one-transaction
helpers; both engines use these, so a state table behaves the same in every database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ...client.errors import InstasentError
from .database import Database, database

__all__ = ["DatabaseLockedError", "Session", "bind", "iso_utc", "now_iso", "open_database", "open_session",
           "parse_iso", "qmark_placeholder"]


def iso_utc(when: dt.datetime) -> str:
    """``when`` as the state tables store times: ISO 8601 UTC text with milliseconds
    (``2026-11-28T09:30:00.000Z``), the same in every database and sortable as text."""
    if when.tzinfo is None:
        raise ValueError(f"a naive datetime is ambiguous here: {when!r} (give it a timezone)")
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso_utc(dt.datetime.now(dt.UTC))


def parse_iso(text: str) -> dt.datetime:
    """The inverse of ``iso_utc`` (any ISO 8601 text with a timezone)."""
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no timezone")
    return when.astimezone(dt.UTC)


def qmark_placeholder(db: Database) -> str:
    """The bind placeholder that replaces ``?`` in the state statements of ``db``."""
    return db.placeholder if db.dialect.name != "duckdb" else "?"


def bind(text: str, placeholder: str) -> str:
    """``text`` with its ``?`` markers turned into ``placeholder``."""
    return text if placeholder == "?" else text.replace("?", placeholder)


class DatabaseLockedError(InstasentError):
    """A DuckDB file is open for writing in another process (DuckDB allows one writer process)."""


def open_database(target: Any, *, memory_limit: str | None = None, lock_wait_s: float = 2.0
                  ) -> tuple[Database, Any | None]:
    """``target`` as a `Database`, plus the connection opened here (the caller closes it) if any.

    A ``str`` / ``Path`` is a DuckDB file (created if missing), opened with a buffer pool of
    ``memory_limit`` (DuckDB spills beyond it); when another process holds it, the open is
    retried for ``lock_wait_s`` seconds, then `DatabaseLockedError`. Anything else goes to
    `airflow_provider_instasent.io.sql.database` and is not opened here.
    """
    if not isinstance(target, (str, Path)):
        return database(target), None
    import duckdb

    deadline = time.monotonic() + lock_wait_s
    while True:
        try:
            conn = duckdb.connect(str(target))
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() < deadline:  # another process has it open: wait a little
                time.sleep(0.1)
                continue
            raise DatabaseLockedError(str(exc)) from None
    if memory_limit:
        with contextlib.suppress(Exception):  # our own embedded file: bound its buffer pool
            conn.execute(f"SET memory_limit = '{memory_limit}'")
    return Database(conn, dialect="duckdb"), conn


class Session:
    """One open connection to a state database for the length of a run.

    Statements are written with ``?`` markers (``sql`` turns them into the driver's
    placeholder); ``transaction`` gives a cursor inside one transaction, committed at the end
    and rolled back on an exception. ``close`` gives the connection back as it was lent.
    """

    def __init__(self, db: Database, conn: Any) -> None:
        self.db = db
        self.d = db.dialect
        self.conn = conn
        self.ph = qmark_placeholder(db)
        self._saved = self.d.prepare(conn)

    def close(self) -> None:
        """Restore the connection's own transaction mode."""
        self.d.restore(self.conn, self._saved)

    def sql(self, text: str) -> str:
        """``text`` with ``?`` markers turned into this connection's placeholder."""
        return bind(text, self.ph)

    def tx(self, statements: Sequence[tuple[str, Sequence[Any]] | str]) -> None:
        """Run ``statements`` (SQL, or (SQL, parameters)) in one transaction."""
        with self.transaction() as cur:
            for st in statements:
                if isinstance(st, str):
                    cur.execute(self.sql(st))
                else:
                    cur.execute(self.sql(st[0]), list(st[1]))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor in one transaction: committed at the end, rolled back on an exception."""
        cur = self.conn.cursor()
        try:
            self.d.begin(cur)
            yield cur
            self.d.commit(self.conn, cur)
        except BaseException:
            self.d.rollback(self.conn, cur)
            raise
        finally:
            with contextlib.suppress(Exception):
                cur.close()

    def query(self, text: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        with self.transaction() as cur:
            cur.execute(self.sql(text), list(params)) if params else cur.execute(self.sql(text))
            return list(cur.fetchall())

    def scalar(self, text: str, params: Sequence[Any] = ()) -> Any:
        rows = self.query(text, params)
        return rows[0][0] if rows else None


@contextlib.contextmanager
def open_session(target: Any, *, factory: Callable[[Database, Any], Any] | None = None,
                 opener: Callable[[Any], tuple[Database, Any | None]] = open_database) -> Iterator[Any]:
    """A `Session` (or what ``factory(db, conn)`` builds: a subclass) on ``target``, opened by
    ``opener`` (`open_database`, or an engine's wrapper of it), closed at the end."""
    db, own = opener(target)
    try:
        with db.connection() as conn:
            session = factory(db, conn) if factory is not None else Session(db, conn)
            try:
                yield session
            finally:
                session.close()
    finally:
        if own is not None:
            with contextlib.suppress(Exception):
                own.close()
