"""A database as the I/O layer sees it, whatever the caller handed in.

``database`` takes a common-sql ``DbApiHook`` (what an operator resolves from its
``conn_id``), a DB-API connection (``psycopg2.connect(...)``, ``duckdb.connect(...)``,
``sqlite3.connect(...)``) or a SQLAlchemy ``Connection``/``Engine``, so a notebook writes
rejects or sync state without an Airflow metadata store. A hook or an engine gives a new
connection per ``Database.connection``, closed afterwards; a connection the caller passed
is borrowed and never closed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from ...client.errors import InstasentConfigError
from .dialects import Dialect, dialect_named

__all__ = ["Database", "database", "detect_dialect"]

_MODULES = (("psycopg", "postgres"), ("duckdb", "duckdb"), ("sqlite3", "sqlite"), ("MySQLdb", "mysql"),
            ("pymysql", "mysql"), ("mysql", "mysql"))


def _is_hook(obj: Any) -> bool:
    """A common-sql hook, or anything that makes connections the same way (``get_conn()``)."""
    return callable(getattr(obj, "get_conn", None))


def _is_sqlalchemy(obj: Any) -> bool:
    return type(obj).__module__.startswith("sqlalchemy") and hasattr(obj, "dialect")


def detect_dialect(obj: Any) -> str:
    """``postgres``, ``duckdb``, ``sqlite``, ``mysql`` or ``generic`` for a hook or connection."""
    if _is_sqlalchemy(obj):
        return dialect_named(str(obj.dialect.name)).name
    if _is_hook(obj):
        conn_type = str(getattr(obj, "conn_type", "") or "").lower()
        names = {cls.__name__ for cls in type(obj).__mro__}
        for hook_class, name in (("PostgresHook", "postgres"), ("DuckDBHook", "duckdb"), ("SqliteHook", "sqlite"),
                                 ("MySqlHook", "mysql")):
            if hook_class in names:
                return name
        return dialect_named(conn_type).name if conn_type else "generic"
    module = type(obj).__module__.lstrip("_")  # duckdb's connection class lives in "_duckdb"
    for prefix, name in _MODULES:
        if module.startswith(prefix):
            return name
    return "generic"


class Database:
    """One database: its ``Dialect``, connections, and small helpers."""

    def __init__(self, target: Any, *, dialect: str | None = None) -> None:
        if isinstance(target, Database):
            target = target.target
        self.target: Any
        if not (_is_hook(target) or _is_sqlalchemy(target) or hasattr(target, "cursor")):
            raise InstasentConfigError(
                f"expected a common-sql DbApiHook, a DB-API connection or a SQLAlchemy connection; got "
                f"{type(target).__name__}")
        self.target = target
        self.dialect: Dialect = dialect_named(dialect or detect_dialect(target))

    @property
    def name(self) -> str:
        """For messages: the hook's connection id, or the connection's type."""
        conn_id = getattr(self.target, getattr(self.target, "conn_name_attr", "") or "-", None)
        return str(conn_id) if conn_id else type(self.target).__name__

    @property
    def placeholder(self) -> str:
        """The bind placeholder: the hook's own, the driver's ``paramstyle``, or the dialect's."""
        if _is_hook(self.target):
            with contextlib.suppress(Exception):
                value = self.target.placeholder
                if value:
                    return str(value)
        return self.dialect.placeholder

    @property
    def borrowed(self) -> bool:
        """True when the caller lent us its connection: we never close it or end its transaction."""
        return not (_is_hook(self.target) or hasattr(self.target, "raw_connection"))

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """A DB-API connection; closed at the end unless the caller lent it to us."""
        target = self.target
        if _is_hook(target):
            conn = target.get_conn()
            own = True
        elif _is_sqlalchemy(target) and hasattr(target, "raw_connection"):  # an Engine
            conn, own = target.raw_connection(), True
        elif _is_sqlalchemy(target):  # a Connection: its driver connection, borrowed
            conn, own = target.connection.driver_connection, False
        else:
            conn, own = target, False
        try:
            yield conn
        finally:
            if own:
                with contextlib.suppress(Exception):
                    conn.close()

    def fetch_all(self, sql: str, parameters: Any = None) -> list[Sequence[Any]]:
        with self.connection() as conn:
            cur = conn.cursor()
            try:
                cur.execute(sql) if parameters is None else cur.execute(sql, parameters)
                rows = list(cur.fetchall())
            finally:
                with contextlib.suppress(Exception):
                    cur.close()
            return rows

    def execute(self, statements: Sequence[str] | str, rows: Sequence[Sequence[Any]] | None = None) -> None:
        """Run ``statements`` (the last one with ``executemany(rows)`` if given) in one transaction."""
        stmts = [statements] if isinstance(statements, str) else list(statements)
        with self.connection() as conn:
            saved = self.dialect.prepare(conn)
            cur = conn.cursor()
            try:
                self.dialect.begin(cur)
                for i, sql in enumerate(stmts):
                    if rows is not None and i == len(stmts) - 1:
                        cur.executemany(sql, list(rows))
                    else:
                        cur.execute(sql)
                self.dialect.commit(conn, cur)
            except BaseException:
                self.dialect.rollback(conn, cur)
                raise
            finally:
                with contextlib.suppress(Exception):
                    cur.close()
                self.dialect.restore(conn, saved)


def database(target: Any) -> Database:
    """``target`` (a hook, a DB-API or SQLAlchemy connection, or a Database) as a ``Database``."""
    return target if isinstance(target, Database) else Database(target)
