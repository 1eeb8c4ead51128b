"""Warehouse fixtures (registered by ``tests/conftest.py``): Airflow connections to real databases (PostgreSQL from
INSTASENT_TEST_POSTGRES_URL, DuckDB and SQLite files in tmp_path) and unique table names."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest


@pytest.fixture
def unique_table() -> str:
    return f"exp_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def duckdb_conn_id(tmp_path, monkeypatch: pytest.MonkeyPatch) -> str:
    pytest.importorskip("airflow")  # an Airflow connection: skipped in the analyst install
    path = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("AIRFLOW_CONN_EXPORT_DUCKDB", json.dumps({"conn_type": "duckdb", "host": str(path)}))
    return "export_duckdb"


@pytest.fixture
def sqlite_conn_id(tmp_path, monkeypatch: pytest.MonkeyPatch) -> str:
    pytest.importorskip("airflow")  # an Airflow connection: skipped in the analyst install
    path = tmp_path / "warehouse.sqlite"
    monkeypatch.setenv("AIRFLOW_CONN_EXPORT_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    return "export_sqlite"


@pytest.fixture
def postgres_conn_id(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    pytest.importorskip("airflow")  # an Airflow connection: skipped in the analyst install
    postgres_url = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("AIRFLOW_CONN_EXPORT_POSTGRES", postgres_url)
    return "export_postgres"


@pytest.fixture
def pg_cleanup(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Tables (and their staging leftovers) to drop from PostgreSQL after the test."""
    pytest.importorskip("airflow")  # with postgres_conn_id: skipped in the analyst install
    postgres_url = request.getfixturevalue("postgres_url")
    names: list[str] = []
    yield names
    import psycopg2

    conn = psycopg2.connect(postgres_url)
    try:
        cur = conn.cursor()
        for name in names:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND "
                        "(tablename = %s OR tablename LIKE %s)", (name, name + "%"))
            for (t,) in cur.fetchall():
                cur.execute(f'DROP TABLE IF EXISTS "{t}"')
        conn.commit()
    finally:
        conn.close()


@pytest.fixture(params=["postgres", "duckdb", "sqlite"])
def sql_target(request: pytest.FixtureRequest, tmp_path, monkeypatch: pytest.MonkeyPatch, unique_table: str
               ) -> tuple[str, str]:
    """(conn_id, table) on each real database."""
    if request.param == "postgres":
        conn_id = request.getfixturevalue("postgres_conn_id")
        request.getfixturevalue("pg_cleanup").append(unique_table)
    else:
        conn_id = request.getfixturevalue(f"{request.param}_conn_id")
    return conn_id, unique_table


