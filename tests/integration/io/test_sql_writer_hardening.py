"""The SQL writer under concurrency and hostile data (issue 18, cases 3-6 and 11), on real databases."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from airflow_provider_instasent.export import Export
from airflow_provider_instasent.io.sql import write_sql
from tests.support.export_fakes import SPECS, FakeClient, contact, fetch, sql_hook, tables

pytestmark = pytest.mark.integration


def export_to(conn_id: str, table: str, client: FakeClient, disposition: str = "replace", **kwargs: Any):
    export = Export(client, batch_size=100, **kwargs)
    return write_sql(export.batches(), sql_hook(conn_id), table, export.schema, write_disposition=disposition,
                     key=export.key)


@pytest.mark.postgres
def test_concurrent_merges_never_double_rows(postgres_conn_id, pg_cleanup, unique_table, monkeypatch):
    """Two merges of the same ids into one table, their final DELETE+INSERT forced to overlap:
    the advisory lock makes them apply one after the other (5,000 ids stay 5,000 rows)."""
    from airflow_provider_instasent.io.sql import dialects

    pg_cleanup.append(unique_table)
    export_to(postgres_conn_id, unique_table, FakeClient(n=50))
    barrier = threading.Barrier(2, timeout=30)
    original = dialects.Postgres.lock_target

    def lock_after_both_arrive(self: Any, cur: Any, table: Any) -> None:
        barrier.wait()  # both transactions are open, their DELETE+INSERT about to overlap
        original(self, cur, table)

    monkeypatch.setattr(dialects.Postgres, "lock_target", lock_after_both_arrive)
    errors: list[BaseException] = []

    def merge(version: str) -> None:
        try:
            export_to(postgres_conn_id, unique_table, FakeClient(n=5_000, version=version), "merge")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=merge, args=(v,)) for v in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert fetch(postgres_conn_id, f"SELECT count(*), count(DISTINCT audience_id) FROM {unique_table}") == [
        (5_000, 5_000)]


@pytest.mark.postgres
def test_replace_is_safe_for_an_older_repeatable_read_snapshot(postgres_conn_id, postgres_url, pg_cleanup,
                                                                unique_table):
    """A REPEATABLE READ reader whose snapshot predates the replace keeps reading the old rows."""
    import psycopg2

    pg_cleanup.append(unique_table)
    export_to(postgres_conn_id, unique_table, FakeClient(n=300, version="old"))
    reader = psycopg2.connect(postgres_url)
    try:
        reader.set_session(isolation_level="REPEATABLE READ")
        cur = reader.cursor()
        cur.execute(f"SELECT count(*), max(plan) FROM {unique_table}")  # the snapshot starts here
        assert cur.fetchone() == (300, "old")
        export_to(postgres_conn_id, unique_table, FakeClient(n=700, version="new"))
        cur.execute(f"SELECT count(*), max(plan) FROM {unique_table}")
        assert cur.fetchone() == (300, "old")  # not an empty table
        reader.rollback()
        cur.execute(f"SELECT count(*), max(plan) FROM {unique_table}")
        assert cur.fetchone() == (700, "new")
    finally:
        reader.close()


@pytest.mark.postgres
def test_long_column_names_map_deterministically(postgres_conn_id, pg_cleanup, unique_table):
    """Two uids sharing their first 63 bytes: two distinct stored columns, the same on every write."""
    pg_cleanup.append(unique_table)
    long_a, long_b = "x" * 70 + "_alpha", "x" * 70 + "_beta"
    specs = [*SPECS, {"uid": long_a, "dataType": "string"}, {"uid": long_b, "dataType": "string"}]

    def client(version: str) -> FakeClient:
        return FakeClient(n=5, specs=specs, version=version,
                          make=lambda i: contact(i, version, **{long_a: f"a{i}", long_b: f"b{i}"}))

    first = export_to(postgres_conn_id, unique_table, client("v1"))
    assert set(first.renamed_columns) == {long_a, long_b}
    col_a, col_b = first.renamed_columns[long_a], first.renamed_columns[long_b]
    assert col_a != col_b and all(len(c.encode()) <= 63 for c in (col_a, col_b))
    for disposition in ("merge", "append", "replace"):
        again = export_to(postgres_conn_id, unique_table, client("v2"), disposition)
        assert again.renamed_columns == first.renamed_columns
    assert fetch(postgres_conn_id, f'SELECT "{col_a}", "{col_b}" FROM {unique_table} ORDER BY 1') == [
        (f"a{i}", f"b{i}") for i in range(5)]


@pytest.mark.postgres
def test_a_nul_character_is_removed_and_counted(postgres_conn_id, pg_cleanup, unique_table):
    pg_cleanup.append(unique_table)
    bad = {2: "pr\x00o", 4: "\x00"}
    result = export_to(postgres_conn_id, unique_table, FakeClient(
        n=6, make=lambda i: contact(i, plan=bad.get(i, "basic"), _client_tags=["t\x00ag"] if i == 3 else None)))
    assert result.rows == 6 and result.values_cleaned == 3
    rows = dict(fetch(postgres_conn_id, f"SELECT audience_id, plan FROM {unique_table}"))
    assert rows["aud-000002"] == "pro" and rows["aud-000004"] == ""
    assert fetch(postgres_conn_id, f"SELECT _client_tags FROM {unique_table} WHERE audience_id = 'aud-000003'") == [
        (["tag"],)]


def test_duckdb_drops_staging_tables_a_killed_run_left(duckdb_conn_id, unique_table):
    export_to(duckdb_conn_id, unique_table, FakeClient(n=10))
    hook = sql_hook(duckdb_conn_id)
    conn = hook.get_conn()
    conn.execute(f"CREATE TABLE {unique_table}__stg_deadbeef (x INTEGER)")  # what a SIGKILL leaves
    conn.close()
    export_to(duckdb_conn_id, unique_table, FakeClient(n=12), "merge")
    assert [t for t in tables(duckdb_conn_id) if t.startswith(unique_table)] == [unique_table]


def test_parquet_temporaries_of_dead_writers_are_removed(tmp_path):
    import subprocess
    import sys

    from airflow_provider_instasent.io.parquet import write_parquet

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    leftover = tmp_path / f".audience.parquet.{dead}.abc123.tmp"
    leftover.write_bytes(b"partial")
    other = tmp_path / ".other.parquet.1.abc.tmp"
    other.write_bytes(b"not ours")
    export = Export(FakeClient(n=10))
    write_parquet(export.batches(), tmp_path / "audience.parquet", export.schema)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.parquet.1.abc.tmp", "audience.parquet"]


def test_replace_keeps_a_view_on_the_target_working(sql_target):
    """DuckDB and SQLite rebuild the table (SQLite used to refuse the swap while a view named
    it), PostgreSQL keeps it: on each, the view reads the new rows."""
    conn_id, table = sql_target
    export_to(conn_id, table, FakeClient(n=50))
    view = f"{table}_view"
    hook = sql_hook(conn_id)
    conn = hook.get_conn()
    try:
        conn.cursor().execute(f"CREATE VIEW {view} AS SELECT audience_id, plan FROM {table}")
        conn.commit()
    finally:
        conn.close()
    try:
        export_to(conn_id, table, FakeClient(n=60, version="v2"))
        assert fetch(conn_id, f"SELECT count(*), min(plan), max(plan) FROM {view}") == [(60, "v2", "v2")]
    finally:
        conn = sql_hook(conn_id).get_conn()
        try:
            conn.cursor().execute(f"DROP VIEW IF EXISTS {view}")
            conn.commit()
        finally:
            conn.close()


@pytest.mark.postgres
def test_postgres_replace_that_changes_the_columns_names_the_dependent_view(postgres_conn_id, pg_cleanup,
                                                                            unique_table):
    """A changed schema swaps the table, which PostgreSQL refuses while a view depends on it:
    the error names the view, and the table keeps its rows."""
    pg_cleanup.append(unique_table)
    export_to(postgres_conn_id, unique_table, FakeClient(n=50))
    view = f"{unique_table}_view"
    conn = sql_hook(postgres_conn_id).get_conn()
    try:
        conn.cursor().execute(f"CREATE VIEW {view} AS SELECT audience_id FROM {unique_table}")
        conn.commit()
        specs = [*SPECS, {"uid": "tier", "dataType": "string"}]
        with pytest.raises(Exception, match=view):
            export_to(postgres_conn_id, unique_table, FakeClient(n=60, specs=specs))
        assert fetch(postgres_conn_id, f"SELECT count(*) FROM {view}") == [(50,)]
    finally:
        conn.cursor().execute(f"DROP VIEW IF EXISTS {view}")
        conn.commit()
        conn.close()


def test_merge_refuses_rows_without_a_key(sql_target):
    """Entities with ``id: null`` would pile up under ``merge`` (no DELETE matches a null): the
    export refuses them (IncompleteExportError), and so does the writer for any stream
    (MergeKeyError); the table keeps its rows."""
    import pyarrow as pa

    from airflow_provider_instasent.export.completeness import IncompleteExportError
    from airflow_provider_instasent.io.sql import MergeKeyError

    conn_id, table = sql_target
    export_to(conn_id, table, FakeClient(n=50))
    nameless = FakeClient(n=60, make=lambda i: {**contact(i), "id": None} if i % 20 == 0 else contact(i))
    with pytest.raises(IncompleteExportError, match=r"3 row\(s\) have no audience_id; nothing committed"):
        export_to(conn_id, table, nameless, "merge")
    export = Export(FakeClient(n=10), batch_size=100)
    batch = next(iter(export.batches()))
    keys = batch.column(batch.schema.get_field_index("audience_id"))
    nulled = pa.array([None if i < 2 else v for i, v in enumerate(keys.to_pylist())], keys.type)
    batch = batch.set_column(batch.schema.get_field_index("audience_id"), "audience_id", nulled)
    for _ in range(2):
        with pytest.raises(MergeKeyError, match=r"2 row\(s\) have no audience_id"):
            write_sql([batch], sql_hook(conn_id), table, export.schema, write_disposition="merge",
                      key="audience_id")
    assert fetch(conn_id, f"SELECT count(*), count(audience_id) FROM {table}") == [(50, 50)]
