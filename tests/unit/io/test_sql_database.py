"""``io.sql.database``: a hook, a DB-API or a SQLAlchemy connection as one Database."""

from __future__ import annotations

import sqlite3

import duckdb
import pytest

from airflow_provider_instasent.client.errors import InstasentConfigError
from airflow_provider_instasent.io.sql import Database, detect_dialect

sqlalchemy = pytest.importorskip("sqlalchemy")


@pytest.mark.parametrize(("make", "dialect", "placeholder"), [
    (lambda p: sqlite3.connect(p / "a.db"), "sqlite", "?"),
    (lambda p: duckdb.connect(str(p / "a.duckdb")), "duckdb", "?"),
    (lambda p: sqlalchemy.create_engine(f"sqlite:///{p / 'b.db'}"), "sqlite", "?"),
])
def test_dialect_and_placeholder_of_plain_connections(tmp_path, make, dialect, placeholder):
    target = make(tmp_path)
    db = Database(target)
    assert detect_dialect(target) == dialect == db.dialect.name
    assert db.placeholder == placeholder
    db.execute(["CREATE TABLE t (a INTEGER, b TEXT)", f"INSERT INTO t VALUES ({placeholder}, {placeholder})"],
               rows=[(1, "x"), (2, "y")])
    assert sorted(tuple(r) for r in db.fetch_all("SELECT a, b FROM t")) == [(1, "x"), (2, "y")]
    assert db.borrowed is not hasattr(target, "raw_connection")  # an engine is pooled, not lent


def test_a_lent_connection_is_not_closed(tmp_path):
    conn = sqlite3.connect(tmp_path / "a.db")
    db = Database(conn)
    with db.connection() as c:
        assert c is conn
    assert conn.execute("SELECT 1").fetchone() == (1,)  # still open


def test_anything_else_is_refused():
    with pytest.raises(InstasentConfigError, match="DbApiHook"):
        Database("warehouse")  # a connection id: the Airflow layer resolves it
