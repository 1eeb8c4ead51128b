"""SQL loading on real databases (PostgreSQL, DuckDB, SQLite) with a fake scroll."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest

from airflow_provider_instasent.client.errors import InstasentConfigError
from airflow_provider_instasent.export import Export
from airflow_provider_instasent.export.engine import prefetch
from airflow_provider_instasent.io.sql import SqlWriter, detect_dialect, write_sql
from tests.support.export_fakes import SPECS, FakeClient, contact, fetch, sql_hook, tables

pytestmark = pytest.mark.integration


def export_to(conn_id: str, table: str, client: FakeClient, disposition: str = "replace", source: str = "audience",
              batch_size: int = 100, **kwargs: Any):
    export = Export(client, source, batch_size=batch_size, segment="s" if source == "segment" else None, **kwargs)
    return write_sql(prefetch(export.batches(), 2), sql_hook(conn_id), table, export.schema,
                     write_disposition=disposition, key=export.key)


def dialect_of(conn_id: str) -> str:
    return conn_id.split("_")[-1]


def as_bool(v: Any) -> bool | None:
    return None if v is None else bool(v)


def test_rows_and_types(sql_target):
    conn_id, table = sql_target
    result = export_to(conn_id, table, FakeClient(n=250))
    assert result.rows == 250 and result.dialect == dialect_of(conn_id)
    rows = fetch(conn_id, f'SELECT audience_id, created_at, _user_id, loyalty_points, birthday, '
                          f'_is_subscribed_sms, _client_tags, _datasources, "_email" FROM {table} '
                          f"ORDER BY audience_id")
    assert len(rows) == 250
    first, second = rows[0], rows[1]
    assert first[0] == "aud-000000" and first[2] == "user-0" and first[8] == "user0@example.com"
    assert second[3] == 1.5
    assert as_bool(first[5]) is True and as_bool(second[5]) is False
    if dialect_of(conn_id) == "sqlite":  # no native dates/arrays: ISO text and JSON arrays
        assert first[1] == "2024-01-01T00:00:00.000+00:00"
        assert first[4] == "1990-02-03"
        assert second[6] == '["a","t1"]' and first[6] is None and first[7] == '["dsapi"]'
    else:
        assert first[1] == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        assert first[4] == dt.date(1990, 2, 3)
        assert list(second[6]) == ["a", "t1"] and first[6] is None and list(first[7]) == ["dsapi"]
    assert [t for t in tables(conn_id) if t.startswith(table + "__")] == []  # no staging left


def test_replace_append_merge(sql_target):
    conn_id, table = sql_target
    export_to(conn_id, table, FakeClient(n=120, version="v1"))
    export_to(conn_id, table, FakeClient(n=120, version="v1"), "replace")
    assert fetch(conn_id, f"SELECT count(*) FROM {table}") == [(120,)]
    export_to(conn_id, table, FakeClient(n=30, version="v2", start=200), "append")
    assert fetch(conn_id, f"SELECT count(*) FROM {table}") == [(150,)]
    # merge: 100..219 -> 100..119 and 200..219 updated, 120..199 inserted
    export_to(conn_id, table, FakeClient(n=120, version="v3", start=100), "merge")
    counts = dict(fetch(conn_id, f"SELECT plan, count(*) FROM {table} GROUP BY plan"))
    assert counts == {"v1": 100, "v2": 10, "v3": 120}
    assert fetch(conn_id, f"SELECT count(DISTINCT audience_id), count(*) FROM {table}") == [(230, 230)]
    export_to(conn_id, table, FakeClient(n=5, version="v4"), "replace")
    assert fetch(conn_id, f"SELECT plan, count(*) FROM {table} GROUP BY plan") == [("v4", 5)]


def test_events_merge_on_event_id(sql_target):
    conn_id, table = sql_target
    export_to(conn_id, table, FakeClient(n=50), "merge", source="events")
    export_to(conn_id, table, FakeClient(n=50, start=25), "merge", source="events")
    assert fetch(conn_id, f"SELECT count(*), count(DISTINCT _event_id) FROM {table}") == [(75, 75)]
    params = fetch(conn_id, f"SELECT _event_parameters FROM {table} WHERE _event_id = 'evt-3'")
    assert params == [('{"b":1,"url":"/p/3"}',)]


def test_append_adds_new_attribute_columns(sql_target):
    conn_id, table = sql_target
    export_to(conn_id, table, FakeClient(n=10))
    specs = [*SPECS, {"uid": "tier", "dataType": "number"}]
    client = FakeClient(n=10, start=10, specs=specs, make=lambda i: contact(i, tier=i))
    export_to(conn_id, table, client, "append")
    assert fetch(conn_id, f"SELECT count(*), count(tier), sum(tier) FROM {table}") == [(20, 10, 145)]


def test_failed_export_leaves_the_old_table(sql_target):
    conn_id, table = sql_target
    export_to(conn_id, table, FakeClient(n=40, version="old"))
    for disposition in ("replace", "append", "merge"):
        with pytest.raises(RuntimeError, match="scroll failed"):
            export_to(conn_id, table, FakeClient(n=400, version="new", fail_after=2), disposition, batch_size=50)
        assert fetch(conn_id, f"SELECT plan, count(*) FROM {table} GROUP BY plan") == [("old", 40)]
    assert [t for t in tables(conn_id) if t.startswith(table + "__")] == []


def test_atomic_replace_reader_sees_old_or_new(sql_target):
    """A reader querying during a replace sees the whole old table or the whole new one."""
    conn_id, table = sql_target
    old_n, new_n = 300, 700
    export_to(conn_id, table, FakeClient(n=old_n, version="old"))
    seen: list[tuple[Any, ...]] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    hook = sql_hook(conn_id)

    def reader() -> None:
        conn = hook.get_conn()
        try:
            while not stop.is_set():
                try:
                    cur = conn.cursor()
                    cur.execute(f"SELECT count(*), min(plan), max(plan) FROM {table}")
                    seen.append(tuple(cur.fetchone()))
                    if hasattr(conn, "commit"):
                        conn.commit()  # a new snapshot for the next query
                except BaseException as exc:
                    errors.append(exc)
                    return
                time.sleep(0.002)
        finally:
            conn.close()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        export_to(conn_id, table, FakeClient(n=new_n, version="new", page_delay=0.01), batch_size=100)
        time.sleep(0.1)
    finally:
        stop.set()
        thread.join(10)
    assert not errors, errors
    assert set(seen) <= {(old_n, "old", "old"), (new_n, "new", "new")}, set(seen)
    assert (old_n, "old", "old") in seen and seen[-1] == (new_n, "new", "new")


def test_identifier_injection_refused_or_quoted(sql_target):
    conn_id, table = sql_target
    with pytest.raises(InstasentConfigError, match="invalid table name"):
        export_to(conn_id, f"{table}; DROP TABLE {table}", FakeClient(n=1))
    with pytest.raises(InstasentConfigError, match="invalid table name"):
        export_to(conn_id, f'{table}" (x int); --', FakeClient(n=1))
    # a hostile attribute uid from the specs becomes a quoted column, not SQL
    evil = 'x"; DROP TABLE victim; --'
    specs = [*SPECS, {"uid": evil, "dataType": "string"}]
    export_to(conn_id, table, FakeClient(n=3, specs=specs, make=lambda i: contact(i, **{evil: "v"})))
    q = '"' + evil.replace('"', '""') + '"'
    assert fetch(conn_id, f"SELECT {q} FROM {table}") == [("v",)] * 3


def test_schema_qualified_table_postgres(postgres_conn_id, pg_cleanup, unique_table):
    pg_cleanup.append(unique_table)
    export_to(postgres_conn_id, f"public.{unique_table}", FakeClient(n=20))
    export_to(postgres_conn_id, f"public.{unique_table}", FakeClient(n=20), "replace")
    assert fetch(postgres_conn_id, f"SELECT count(*) FROM public.{unique_table}") == [(20,)]


def test_postgres_array_literals_round_trip(postgres_conn_id, pg_cleanup, unique_table):
    pg_cleanup.append(unique_table)
    tricky = ['a"b', "c,d", "{e}", "NULL", "back\\slash", "", None, "new\nline", "ñ €"]
    export_to(postgres_conn_id, unique_table, FakeClient(n=1, make=lambda i: contact(i, _client_tags=tricky,
                                                                                     plan='x"y,\n\\z')))
    assert fetch(postgres_conn_id, f"SELECT _client_tags, plan FROM {unique_table}") == [(tricky, 'x"y,\n\\z')]


def test_detect_dialect_and_bad_disposition(duckdb_conn_id, sqlite_conn_id):
    assert detect_dialect(sql_hook(duckdb_conn_id)) == "duckdb"
    assert detect_dialect(sql_hook(sqlite_conn_id)) == "sqlite"
    schema = Export(FakeClient()).schema
    with pytest.raises(InstasentConfigError, match="write_disposition"):
        SqlWriter(sql_hook(sqlite_conn_id), "t", schema, write_disposition="upsert")
    with pytest.raises(InstasentConfigError, match="merge needs a key"):
        SqlWriter(sql_hook(sqlite_conn_id), "t", schema, write_disposition="merge", key="nope")


@pytest.mark.parametrize("raw", [False, True])
def test_duckdb_commits_at_each_row_group_and_rolls_back_the_rest(duckdb_conn_id, unique_table, monkeypatch, raw):
    """Batches are split at DuckDB row-group boundaries (7 rows here) and committed there;
    a failure after some commits still leaves the old table and no staging table."""
    from airflow_provider_instasent.io.sql import dialects
    from tests.support.export_fakes import FakeRawClient

    monkeypatch.setattr(dialects, "DUCKDB_ROW_GROUP", 7)
    client_type = FakeRawClient if raw else FakeClient
    export_to(duckdb_conn_id, unique_table, client_type(n=53), batch_size=10)
    rows = fetch(duckdb_conn_id, f"SELECT audience_id FROM {unique_table} ORDER BY audience_id")
    assert [r[0] for r in rows] == [f"aud-{i:06d}" for i in range(53)]
    with pytest.raises(RuntimeError, match="scroll failed"):
        export_to(duckdb_conn_id, unique_table, client_type(n=400, version="new", fail_after=4), batch_size=10,
                  page_size=10)
    assert fetch(duckdb_conn_id, f"SELECT plan, count(*) FROM {unique_table} GROUP BY plan") == [("v1", 53)]
    assert [t for t in tables(duckdb_conn_id) if t.startswith(unique_table + "__")] == []
