"""SQL identifiers: a malicious table name is refused, a hostile column name is only a name.

Every check keeps a sentinel table ``keep`` in the target database and verifies it survived.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from airflow_provider_instasent.client.errors import InstasentConfigError
from airflow_provider_instasent.ingest import write_contacts
from airflow_provider_instasent.io.sql import TableName
from airflow_provider_instasent.operators.base import sql_hook

from .conftest import ADMIN_TOKEN, make_client

pytestmark = pytest.mark.integration

MALICIOUS_TABLES = [
    "x; DROP TABLE keep",
    'x"; DROP TABLE keep; --',
    "x' OR '1'='1",
    "x -- comment",
    "x/*c*/",
    "keep;",
    "a.b.c",
    "main.keep; DELETE FROM keep",
    "x\x00y",
    "",
    " ",
    "1abc",
    "täble",
    "t" * 64,
    "x\nDROP TABLE keep",
]
HOSTILE_UIDS = ['we"ird', "x'); DROP TABLE keep; --", "semi;colon", "Space Name", "back`tick", "UPPER"]
HOSTILE_FIXTURE = {"extends": "default", "projects": [{"uid": "demo", "attributes": [
    {"uid": "plan", "dataType": "string"}, {"uid": "loyalty_points", "dataType": "number"},
    {"uid": "birthday", "dataType": "date"}, *({"uid": u, "dataType": "string"} for u in HOSTILE_UIDS)]}]}


def sqlite_with_sentinel(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE keep (x INTEGER)")
        conn.execute("INSERT INTO keep VALUES (42)")
    return path


def sentinel_intact(path: Path) -> bool:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT x FROM keep").fetchall() == [(42,)]


@pytest.fixture
def sqlite_target(tmp_path, monkeypatch) -> Path:
    db = sqlite_with_sentinel(tmp_path / "warehouse.sqlite")
    monkeypatch.setenv("AIRFLOW_CONN_RELIABILITY_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    return db


@pytest.mark.parametrize("name", MALICIOUS_TABLES)
def test_a_malicious_table_name_is_refused_before_touching_the_database(name, sqlite_target, monkeypatch):
    from airflow_provider_instasent.operators.export import InstasentToSqlOperator

    # the Instasent connection points nowhere: the refusal must come before any request
    monkeypatch.setenv("AIRFLOW_CONN_INSTASENT_DEFAULT", json.dumps({
        "conn_type": "instasent", "host": "http://127.0.0.1:9", "password": ADMIN_TOKEN,
        "extra": {"project": "demo", "max_retries": 0}}))
    with pytest.raises(InstasentConfigError, match="invalid table name"):
        TableName.parse(name)
    op = InstasentToSqlOperator(task_id="export", sql_conn_id="reliability_sqlite", table="{{ params.table }}")
    op.render_template_fields({"params": {"table": name}})  # e.g. from a DAG run's conf
    with pytest.raises(InstasentConfigError, match="invalid table name"):
        op.execute(context={})
    assert sentinel_intact(sqlite_target)
    with sqlite3.connect(sqlite_target) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["keep"]


def test_valid_table_names_are_accepted():
    for name in ("audience", "analytics.audience", "_x1", "A" * 63, "schema_1.t_2"):
        assert str(TableName.parse(name)) == name


@pytest.fixture
def duckdb_target(tmp_path, monkeypatch) -> Path:
    duckdb = pytest.importorskip("duckdb")
    db = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE keep (x INTEGER)")
        con.execute("INSERT INTO keep VALUES (42)")
    monkeypatch.setenv("AIRFLOW_CONN_RELIABILITY_DUCKDB", json.dumps({"conn_type": "duckdb", "host": str(db)}))
    return db


def duckdb_rows(db: Path, sql: str) -> list[tuple]:
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.mark.parametrize("target", ["sqlite", "duckdb"])
def test_hostile_attribute_uids_become_quoted_column_names(target, make_emulator, sqlite_target, duckdb_target,
                                                           monkeypatch, tmp_path):
    """Attribute uids with quotes, semicolons and SQL are exported as columns of those exact names."""
    from airflow_provider_instasent.operators.export import InstasentToParquetOperator, InstasentToSqlOperator

    emulator = make_emulator(HOSTILE_FIXTURE)
    with make_client(emulator.base_url) as client:
        client.push_contacts([{"_user_id": f"h{i}", **{u: f"{u}={i}" for u in HOSTILE_UIDS}} for i in range(3)])
    monkeypatch.setenv("AIRFLOW_CONN_INSTASENT_DEFAULT", json.dumps({
        "conn_type": "instasent", "host": emulator.base_url, "password": ADMIN_TOKEN, "extra": {"project": "demo"}}))
    conn_id = f"reliability_{target}"
    for disposition in ("replace", "merge", "append"):
        result = InstasentToSqlOperator(task_id="x", sql_conn_id=conn_id, table="hostile",
                                        write_disposition=disposition).execute(context={})
        assert result["rows"] == 3
    if target == "sqlite":
        assert sentinel_intact(sqlite_target)
        with sqlite3.connect(sqlite_target) as conn:
            columns = [r[1] for r in conn.execute('PRAGMA table_info("hostile")')]
            values = conn.execute('SELECT "x\'); DROP TABLE keep; --", "we""ird" FROM hostile '
                                  'WHERE "_user_id" = \'h1\'').fetchall()
            tables = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    else:
        assert duckdb_rows(duckdb_target, "SELECT x FROM keep") == [(42,)]
        columns = [r[0] for r in duckdb_rows(duckdb_target, "SELECT column_name FROM information_schema.columns "
                                                            "WHERE table_name = 'hostile' ORDER BY ordinal_position")]
        values = duckdb_rows(duckdb_target, 'SELECT "x\'); DROP TABLE keep; --", "we""ird" FROM hostile '
                                            'WHERE "_user_id" = \'h1\'')
        tables = sorted(r[0] for r in duckdb_rows(duckdb_target, "SELECT table_name FROM information_schema.tables"))
    assert set(HOSTILE_UIDS) <= set(columns)
    assert values == [("x'); DROP TABLE keep; --=1", 'we"ird=1')] * 2  # merge then append: two copies
    assert tables == ["hostile", "keep"]  # no staging table left behind, nothing dropped
    parquet = InstasentToParquetOperator(task_id="p", path=str(tmp_path / "hostile.parquet")).execute(context={})
    assert parquet["rows"] == 3


def test_a_malicious_rejects_table_is_refused(emulator, duckdb_target):
    with make_client(emulator.base_url) as client, pytest.raises(InstasentConfigError):
        write_contacts(client, pd.DataFrame({"_user_id": ["ok", ""]}), on_invalid="dead_letter",
                       rejects_table="rej (a int); DROP TABLE keep; CREATE TABLE rej2",
                       rejects_conn=sql_hook("reliability_duckdb"))
    assert duckdb_rows(duckdb_target, "SELECT x FROM keep") == [(42,)]


def test_the_rejects_table_receives_the_rejects(emulator, sqlite_target):
    """The legitimate path the fix must keep working."""
    with make_client(emulator.base_url) as client:
        report = write_contacts(client, pd.DataFrame({"_user_id": ["ok", ""]}), on_invalid="dead_letter",
                                rejects_table="ingest_rejects", rejects_conn=sql_hook("reliability_sqlite"),
                                run_id="r1")
    assert report.rejected == 1
    with sqlite3.connect(sqlite_target) as conn:
        assert conn.execute("SELECT source_row, field, run_id FROM ingest_rejects").fetchall() == [
            (1, "_user_id", "r1")]
    assert sentinel_intact(sqlite_target)
