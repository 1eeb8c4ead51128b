"""Incremental export against the emulator and its clock: a changed contact appears, an unchanged one
is not re-read, a killed run re-reads from the old watermark; DuckDB, PostgreSQL and Parquet targets."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import requests

from airflow_provider_instasent import InstasentClient
from airflow_provider_instasent.export import Export, read_audience, read_events, read_segment
from airflow_provider_instasent.export.incremental import (
    PARQUET_WATERMARK_KEY,
    WATERMARKS_TABLE,
    IncrementalParquet,
    IncrementalSql,
    coarse_root,
    fingerprint,
    parquet_watermark,
)
from airflow_provider_instasent.io.parquet import write_parquet
from airflow_provider_instasent.io.sql import write_sql
from tests.conftest import ADMIN_TOKEN, PROJECT
from tests.support.export_fakes import fetch_rows

pytestmark = pytest.mark.integration

T0 = dt.datetime(2030, 6, 1, tzinfo=dt.UTC)
ROOT = Path(__file__).resolve().parents[3]


def clock(url: str, **body: Any) -> None:
    requests.post(f"{url}/_emulator/clock", json=body, timeout=10).raise_for_status()


def seed(client: InstasentClient, users: range, plan: str = "free") -> None:
    for start in range(users.start, users.stop, 100):
        batch = [{"_user_id": f"u{i:04d}", "plan": plan, "loyalty_points": i}
                 for i in range(start, min(users.stop, start + 100))]
        assert client.push_contacts(batch, sync=True).ok


class DuckHook:
    """A minimal common-sql-like hook (``get_conn``) on a DuckDB file."""

    conn_type = "duckdb"

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def get_conn(self) -> Any:
        import duckdb

        return duckdb.connect(self.path)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        import duckdb

        with duckdb.connect(self.path, read_only=True) as con:
            return [tuple(r) for r in con.execute(sql).fetchall()]


class PgHook:
    conn_type = "postgres"

    def __init__(self, url: str) -> None:
        self.url = url

    def get_conn(self) -> Any:
        import psycopg2

        return psycopg2.connect(self.url)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return fetch_rows(self, sql)


class ParquetTarget:
    """A Parquet file as a target of the same tests."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        import duckdb

        with duckdb.connect() as con:
            return [tuple(r) for r in con.execute(sql.replace("{t}", f"read_parquet('{self.path}')")).fetchall()]


@pytest.fixture(params=["duckdb", "postgres", "parquet"])
def target(request: pytest.FixtureRequest, tmp_path: Path, unique_table: str) -> Iterator[Any]:
    """(kind, hook or file, table) on each real target."""
    if request.param == "duckdb":
        yield "duckdb", DuckHook(tmp_path / "warehouse.duckdb"), unique_table
        return
    if request.param == "parquet":
        yield "parquet", ParquetTarget(tmp_path / "audience.parquet"), "{t}"
        return
    pytest.importorskip("psycopg2")  # not in the analyst's install
    hook = PgHook(request.getfixturevalue("postgres_url"))
    yield "postgres", hook, unique_table
    conn = hook.get_conn()
    try:
        cur = conn.cursor()
        cur.execute(f'DROP TABLE IF EXISTS "{unique_table}"')
        cur.execute(f"DELETE FROM {WATERMARKS_TABLE} WHERE target = %s", (unique_table,))
        conn.commit()
    finally:
        conn.close()


FP = fingerprint("audience")


def incremental(kind: str, where: Any, table: str, lookback: Any = None) -> Any:
    if kind == "parquet":
        return IncrementalParquet(where.path, fingerprint=FP, lookback=lookback)
    return IncrementalSql(where, table, fingerprint=FP, lookback=lookback)


def run(client: InstasentClient, kind: str, where: Any, table: str, **kw: Any) -> Export:
    """One incremental run; the export (its stats) is returned."""
    inc = incremental(kind, where, table)
    export = Export(client, "audience", since=inc.since(), track_start=True, **kw)
    inc.write(export)
    return export


def test_changed_contact_appears_and_unchanged_ones_are_not_reread(client, emu, target):
    kind, where, table = target
    clock(emu, now=T0.isoformat())
    seed(client, range(250))
    clock(emu, advance_s=3 * 86400)
    first = run(client, kind, where, table)
    assert first.stats.since is None and first.stats.rows == first.stats.rows_read == 250
    assert first.stats.pages == 3
    assert where.rows(f"SELECT count(*) FROM {table}") == [(250,)]

    clock(emu, advance_s=2 * 86400)  # two days later: one contact changes, one is new
    client.push_contacts([{"_user_id": "u0007", "plan": "pro"}, {"_user_id": "u0900", "plan": "pro"}], sync=True)
    clock(emu, advance_s=2 * 3600)  # beyond the next run's lookback
    second = run(client, kind, where, table)
    # the server-side filter left out every unchanged contact: one page, two rows
    assert second.stats.since == first.stats.server_started - dt.timedelta(hours=1)
    assert (second.stats.rows_read, second.stats.rows, second.stats.pages) == (2, 2, 1)
    assert where.rows(f"SELECT count(*), count(DISTINCT audience_id) FROM {table}") == [(251, 251)]
    assert where.rows(f"SELECT plan FROM {table} WHERE _user_id IN ('u0007', 'u0900') ORDER BY 1") == [
        ("pro",), ("pro",)]
    assert where.rows(f"SELECT plan FROM {table} WHERE _user_id = 'u0008'") == [("free",)]

    # a third run with nothing changed since the second writes nothing: the server's whole-day filter
    # still returns the two contacts changed two days ago, the exact filter drops them
    clock(emu, advance_s=2 * 86400)
    third = run(client, kind, where, table)
    assert (third.stats.rows_read, third.stats.rows) == (2, 0)
    assert where.rows(f"SELECT count(*) FROM {table}") == [(251,)]

    # identical, row for row, to a fresh full export
    fresh = Export(client, "audience").table().sort_by("audience_id")
    if kind == "parquet":
        mine = pq.read_table(where.path).sort_by("audience_id")
        assert mine.select(fresh.column_names).equals(fresh)
        assert parquet_watermark(where.path) is not None
    else:
        copy = f"{table}_fresh"
        write_sql(Export(client, "audience").batches(), where, copy, fresh.schema)
        try:
            assert where.rows(f"SELECT * FROM {table} ORDER BY audience_id") == where.rows(
                f"SELECT * FROM {copy} ORDER BY audience_id")
        finally:
            conn = where.get_conn()
            conn.cursor().execute(f'DROP TABLE "{copy}"')
            conn.commit()
            conn.close()


def test_a_late_write_inside_the_lookback_window_is_read(client, emu, tmp_path):
    hook, table = DuckHook(tmp_path / "w.duckdb"), "audience"
    clock(emu, now=T0.isoformat())
    seed(client, range(20))
    clock(emu, advance_s=86400)
    run(client, "duckdb", hook, table)
    clock(emu, advance_s=86400)
    second = run(client, "duckdb", hook, table)
    assert second.stats.rows == 0
    # a write dated ten minutes before the second run's watermark (an update the index showed late)
    clock(emu, advance_s=-600)
    client.push_contacts([{"_user_id": "u0003", "plan": "late"}], sync=True)
    clock(emu, advance_s=2 * 86400)
    third = run(client, "duckdb", hook, table)
    assert third.stats.since == second.stats.server_started - dt.timedelta(hours=1)
    assert (third.stats.rows_read, third.stats.rows) == (1, 1)
    assert hook.rows(f"SELECT count(*), max(plan) FILTER (WHERE _user_id = 'u0003') FROM {table}") == [(20, "late")]


def test_a_changed_filter_or_a_dropped_table_starts_with_a_full_run(client, emu, tmp_path):
    hook = DuckHook(tmp_path / "w.duckdb")
    seed(client, range(30))
    run(client, "duckdb", hook, "a")
    assert IncrementalSql(hook, "a", fingerprint=FP).since() is not None
    other = IncrementalSql(hook, "a", fingerprint=fingerprint("audience", attributes=["plan"]))
    assert other.since() is None  # the stored watermark belongs to another column list
    conn = hook.get_conn()
    conn.execute("DROP TABLE a")
    conn.close()
    assert IncrementalSql(hook, "a", fingerprint=FP).since() is None  # a watermark without its table
    assert run(client, "duckdb", hook, "a").stats.rows == 30


KILLED = textwrap.dedent("""
    import sys, time
    from airflow_provider_instasent import InstasentClient
    from airflow_provider_instasent.export import Export
    from tests.integration.export.test_incremental import FP, incremental, DuckHook, PgHook, ParquetTarget
    from pathlib import Path

    url, kind, where, table = sys.argv[1:5]
    target = {"duckdb": lambda: DuckHook(Path(where)), "postgres": lambda: PgHook(where),
              "parquet": lambda: ParquetTarget(Path(where))}[kind]()
    client = InstasentClient(token=sys.argv[5], project=sys.argv[6], base_url=url)
    inc = incremental(kind, target, table)
    export = Export(client, "audience", since=inc.since(), track_start=True, batch_size=1)
    batches = export.batches

    def slow():
        for batch in batches():
            yield batch
            print("LOADED", flush=True)  # one batch is in the writer's hands: the parent kills us now
            time.sleep(120)

    export.batches = slow
    inc.write(export)
    print("FINISHED", flush=True)
""")


def test_a_killed_run_is_read_again_by_the_next(client, emu, target, tmp_path):
    kind, where, table = target
    clock(emu, now=T0.isoformat())
    seed(client, range(40))
    clock(emu, advance_s=3 * 86400)
    first = run(client, kind, where, table)
    mark = incremental(kind, where, table).stored()
    assert mark is not None and mark.at == first.stats.server_started

    clock(emu, advance_s=2 * 86400)
    client.push_contacts([{"_user_id": "u0005", "plan": "pro"}, {"_user_id": "u0006", "plan": "pro"}], sync=True)
    clock(emu, advance_s=3600)
    location = {"duckdb": lambda: where.path, "postgres": lambda: where.url, "parquet": lambda: str(where.path)}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, emu, kind, location[kind](), table, ADMIN_TOKEN, PROJECT],
        stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "LOADED", line
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # the kill left the target and its watermark as the first run committed them
    assert incremental(kind, where, table).stored() == mark
    assert where.rows(f"SELECT count(*), count(*) FILTER (WHERE plan = 'pro') FROM {table}") == [(40, 0)]
    # the next run reads from the old watermark: nothing is skipped
    again = run(client, kind, where, table)
    assert again.stats.since == mark.at - dt.timedelta(hours=1)
    assert again.stats.rows == 2
    assert where.rows(f"SELECT count(*), count(*) FILTER (WHERE plan = 'pro') FROM {table}") == [(40, 2)]


def test_events_are_appended_once_by_event_id(client, emu, tmp_path):
    hook, table = DuckHook(tmp_path / "w.duckdb"), "events"
    clock(emu, now=T0.isoformat())
    seed(client, range(5))
    fp = fingerprint("events")

    def events(ids: range) -> None:  # no _event_date: dated now by the server's clock
        assert client.push_events([{"_user_id": f"u{i % 5:04d}", "_event_id": f"e{i}", "_event_type": "page_view",
                                    "_event_parameters": {"url": f"/{i}"}} for i in ids], sync=True).ok

    def go() -> Export:
        inc = IncrementalSql(hook, table, fingerprint=fp)
        export = Export(client, "events", since=inc.since(), track_start=True)
        inc.write(export)
        return export

    events(range(0, 100))
    events(range(100, 150))
    clock(emu, advance_s=2 * 86400)
    assert go().stats.rows == 150
    clock(emu, advance_s=1800)  # within the lookback of the next run
    events(range(150, 160))
    clock(emu, advance_s=1800)
    second = go()
    assert (second.stats.rows_read, second.stats.rows) == (10, 10)
    clock(emu, advance_s=600)
    third = go()  # reads the last ten again (they are inside its one-hour lookback): no duplicates
    assert third.stats.rows == 10
    assert hook.rows(f"SELECT count(*), count(DISTINCT _event_id) FROM {table}") == [(160, 160)]


def test_dataframe_api_since(client, emu):
    clock(emu, now=T0.isoformat())
    seed(client, range(120))
    assert client.push_events([{"_user_id": "u0001", "_event_id": "old", "_event_type": "page_view",
                                "_event_parameters": {"url": "/"}}], sync=True).ok
    clock(emu, advance_s=4 * 86400)
    client.push_contacts([{"_user_id": "u0002", "plan": "pro"}], sync=True)
    assert client.push_events([{"_user_id": "u0001", "_event_id": "new", "_event_type": "page_view",
                                "_event_parameters": {"url": "/"}}], sync=True).ok
    since = (T0 + dt.timedelta(days=4) - dt.timedelta(minutes=5)).isoformat()
    changed = read_audience(client, since=since)
    assert list(changed["_user_id"]) == ["u0002"]
    assert list(read_segment(client, "by_plan", "pro", since=since)["_user_id"]) == ["u0002"]
    assert read_segment(client, "by_plan", "free", since=since).empty
    assert list(read_events(client, since=since)["_event_id"]) == ["new"]
    assert len(read_audience(client)) == 120
    with pytest.raises(Exception, match="timezone"):
        read_audience(client, since="2030-06-01T00:00:00")


def test_coarse_filter_covers_since_in_whole_days():
    now = dt.datetime(2030, 6, 5, 12, tzinfo=dt.UTC)
    root = coarse_root(None, "audience", now - dt.timedelta(hours=23), now)
    (cond,) = root["children"]
    assert cond["key"] == "_date_updated" and cond["values"]["lowerOffset"] == -1
    assert coarse_root({"type": "group", "children": []}, "events", now - dt.timedelta(days=1), now)[
        "children"][1]["values"]["lowerOffset"] == -2  # one day plus the margin
    assert coarse_root(None, "events", now - dt.timedelta(days=1), now)["children"][0]["key"] == "created-at"


def test_parquet_merge_keeps_its_watermark_in_the_file(tmp_path):
    import pyarrow as pa

    schema = pa.schema([("k", pa.string()), ("v", pa.int64())])
    path = tmp_path / "t.parquet"
    write_parquet([pa.record_batch([["a", "b"], [1, 2]], schema=schema)], path, schema, write_disposition="merge",
                  key="k", metadata={PARQUET_WATERMARK_KEY: '{"watermark": "2030-01-01T00:00:00.000Z", '
                                                            '"fingerprint": "x"}'})
    write_parquet([pa.record_batch([["b", "c"], [20, 30]], schema=schema)], path, schema, write_disposition="merge",
                  key="k", metadata={PARQUET_WATERMARK_KEY: '{"watermark": "2030-01-02T00:00:00.000Z", '
                                                            '"fingerprint": "x"}'})
    assert sorted(pq.read_table(path).to_pylist(), key=lambda r: r["k"]) == [
        {"k": "a", "v": 1}, {"k": "b", "v": 20}, {"k": "c", "v": 30}]
    mark = parquet_watermark(path)
    assert mark is not None and mark.at == dt.datetime(2030, 1, 2, tzinfo=dt.UTC)
    assert parquet_watermark(tmp_path / "none.parquet") is None


# --- the operators -------------------------------------------------------------------------------

def test_sql_operator_incremental(instasent_conn, client, emu, duckdb_conn_id, unique_table):
    from airflow_provider_instasent.client.errors import InstasentConfigError
    from airflow_provider_instasent.operators.export import InstasentToSqlOperator
    from tests.support.export_fakes import fetch

    clock(emu, now=T0.isoformat())
    seed(client, range(150))
    clock(emu, advance_s=2 * 86400)

    def op(**kw: Any) -> Any:
        return InstasentToSqlOperator(task_id="inc", sql_conn_id=duckdb_conn_id, table=unique_table,
                                      incremental=True, lookback=dt.timedelta(minutes=30), **kw)

    first = op().execute(context={"run_id": "r1"})
    assert (first["rows"], first["since"]) == (150, None) and first["target"]["write_disposition"] == "merge"
    clock(emu, advance_s=86400)
    client.push_contacts([{"_user_id": "u0001", "plan": "pro"}], sync=True)
    clock(emu, advance_s=3600)
    second = op().execute(context={"run_id": "r2"})
    assert (second["rows"], second["rows_read"], second["pages"]) == (1, 1, 1)
    assert second["since"].startswith("2030-06-02T23:30")  # the first run's watermark minus the lookback
    assert fetch(duckdb_conn_id, f"SELECT count(*), max(plan) FILTER (WHERE _user_id = 'u0001') FROM {unique_table}"
                 ) == [(150, "pro")]
    row = fetch(duckdb_conn_id, f"SELECT run_id, rows_read, rows_written, watermark FROM {WATERMARKS_TABLE} "
                                f"WHERE target = '{unique_table}'")
    assert row == [("r2", 1, 1, second["watermark"])]
    with pytest.raises(InstasentConfigError, match="write_disposition must be 'merge'"):
        op(write_disposition="replace").execute(context={})


def test_parquet_operator_incremental(instasent_conn, client, emu, tmp_path):
    from airflow_provider_instasent.operators.export import InstasentToParquetOperator

    clock(emu, now=T0.isoformat())
    seed(client, range(120))
    clock(emu, advance_s=2 * 86400)
    path = tmp_path / "audience.parquet"
    op = InstasentToParquetOperator(task_id="pq", path=str(path), incremental=True)
    assert op.execute(context={})["rows"] == 120
    clock(emu, advance_s=86400)
    client.push_contacts([{"_user_id": "u0002", "plan": "pro"}, {"_user_id": "u9999", "plan": "pro"}], sync=True)
    clock(emu, advance_s=2 * 3600)
    out = op.execute(context={})
    assert (out["rows"], out["rows_read"]) == (2, 2)
    table = pq.read_table(path)
    assert table.num_rows == 121 and len(set(table.column("audience_id").to_pylist())) == 121
    assert parquet_watermark(path) is not None and parquet_watermark(path).at.isoformat().startswith("2030-06-04")


def test_parquet_merge_adds_a_new_column_as_null_for_the_old_rows(tmp_path):
    import pyarrow as pa

    old = pa.schema([("k", pa.string()), ("v", pa.int64())])
    new = pa.schema([("k", pa.string()), ("v", pa.int64()), ("w", pa.string())])  # an attribute added since
    path = tmp_path / "t.parquet"
    write_parquet([pa.record_batch([["a", "b"], [1, 2]], schema=old)], path, old)
    write_parquet([pa.record_batch([["b"], [20], ["x"]], schema=new)], path, new, write_disposition="merge", key="k")
    table = pq.read_table(path)
    assert table.schema.names == ["k", "v", "w"]
    assert sorted(table.to_pylist(), key=lambda r: r["k"]) == [{"k": "a", "v": 1, "w": None},
                                                                {"k": "b", "v": 20, "w": "x"}]
