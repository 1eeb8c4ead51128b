"""Unit tests for ``airflow_provider_instasent.sharding`` (no Airflow, no network)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, date, datetime
from itertools import pairwise
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_instasent import sharding as sh
from airflow_provider_instasent.io.shards import _cut_points


def _write(path: Path, start: int, n: int, row_group_size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"id": pa.array(range(start, start + n), pa.int64()),
                      "_event_id": [f"e-{i}" for i in range(start, start + n)]})
    pq.write_table(table, path, row_group_size=row_group_size)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "events"
    _write(root / "a.parquet", 0, 10_000, 1_000)  # 10 row groups
    _write(root / "b.parquet", 10_000, 2_500, 1_000)  # 3 row groups (1000, 1000, 500)
    _write(root / "sub" / "c.parquet", 12_500, 7_500, 2_500)  # 3 row groups
    (root / "_SUCCESS").write_text("")
    (root / ".hidden.parquet").write_text("not parquet")
    (root / "_tmp").mkdir()
    (root / "_tmp" / "partial.parquet").write_text("not parquet")
    return root


def _ids(shards: list[dict]) -> list[int]:
    out: list[int] = []
    for s in shards:
        for batch in sh.read_shard(s, batch_size=700):
            out.extend(batch.column("id").to_pylist())
    return out


# ---------------------------------------------------------------------------------- listing


def test_list_directory_skips_hidden_and_underscore(dataset: Path) -> None:
    files = sh.list_parquet_files(dataset)
    assert [Path(f).relative_to(dataset).as_posix() for f in files] == ["a.parquet", "b.parquet", "sub/c.parquet"]
    assert all(Path(f).is_absolute() for f in files)


def test_list_glob_list_and_uri(dataset: Path) -> None:
    assert len(sh.list_parquet_files(str(dataset / "**" / "*.parquet"))) == 3
    assert len(sh.list_parquet_files([dataset / "a.parquet", dataset / "a.parquet", dataset / "b.parquet"])) == 2
    uri_files = sh.list_parquet_files(f"file://{dataset}")
    assert [f.split("/")[-1] for f in uri_files] == ["a.parquet", "b.parquet", "c.parquet"]
    assert all(f.startswith("file://") for f in uri_files)


def test_list_missing_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        sh.list_parquet_files(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        sh.list_parquet_files(str(tmp_path / "*.parquet"))


# ---------------------------------------------------------------------------------- planning


def test_plan_covers_every_row_once_and_balances(dataset: Path) -> None:
    shards = sh.plan_parquet_shards(dataset, target_rows=4_000)
    assert len(shards) == 5  # ceil(20000 / 4000)
    assert [s["index"] for s in shards] == list(range(5))
    assert all(s["count"] == 5 for s in shards)
    assert sum(s["rows"] for s in shards) == 20_000
    sizes = [s["rows"] for s in shards]
    assert max(sizes) - min(sizes) <= 2_500  # at most one row group of imbalance
    assert sorted(_ids(shards)) == list(range(20_000))
    assert len({s["shard_id"] for s in shards}) == 5
    # descriptors are plain JSON (XCom / expand) and survive a round trip
    assert json.loads(json.dumps(shards)) == shards
    assert len(json.dumps(shards[0])) < 1_000


def test_plan_spans_small_files_and_splits_big_ones(dataset: Path) -> None:
    shards = sh.plan_parquet_shards(dataset, target_rows=6_000)
    parts = [(Path(p["path"]).name, p["row_group_start"], p["row_group_stop"]) for s in shards for p in s["parts"]]
    # a.parquet is split across shards, and some shard reads from two files
    assert sum(1 for name, *_ in parts if name == "a.parquet") >= 2
    assert any(len(s["parts"]) > 1 for s in shards)
    # row-group ranges of one file never overlap and cover it entirely
    a = sorted((start, stop) for name, start, stop in parts if name == "a.parquet")
    assert a[0][0] == 0 and a[-1][1] == 10 and all(x[1] == y[0] for x, y in pairwise(a))
    assert sorted(_ids(shards)) == list(range(20_000))


def test_plan_limits(dataset: Path) -> None:
    assert len(sh.plan_parquet_shards(dataset, target_rows=1)) == 16  # one per row group at most
    assert len(sh.plan_parquet_shards(dataset, target_rows=1, max_shards=3)) == 3
    assert len(sh.plan_parquet_shards(dataset, target_rows=10**9)) == 1
    assert len(sh.plan_parquet_shards(dataset, target_rows=10**9, min_shards=4)) == 4
    with pytest.raises(sh.ShardError):
        sh.plan_parquet_shards(dataset, target_rows=0)


def test_plan_empty_file(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": pa.array([], pa.int64())}), tmp_path / "empty.parquet")
    assert sh.plan_parquet_shards(tmp_path / "empty.parquet") == []


def test_plan_not_parquet(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_text("hello")
    with pytest.raises(sh.ShardError, match="footer"):
        sh.plan_parquet_shards(tmp_path / "x.parquet")


def test_cut_points_balanced() -> None:
    # ten units of 100 rows -> 4 shards of 300/200/300/200 (closest boundaries)
    cum = [100 * (i + 1) for i in range(10)]
    cuts = _cut_points(cum, 4)
    assert cuts[-1] == 10 and len(cuts) == 4
    sizes = [cum[c - 1] - (cum[p - 1] if p else 0) for p, c in zip([0, *cuts[:-1]], cuts)]
    assert sorted(sizes) == [200, 200, 300, 300]
    # a huge first unit gets a shard of its own, the rest are still split
    cum = [1000, 1010, 1020, 1030]
    assert _cut_points(cum, 3) == [1, 2, 4]


# ---------------------------------------------------------------------------------- reading


def test_read_shard_streams_only_its_row_groups(dataset: Path) -> None:
    shards = sh.plan_parquet_shards(dataset, target_rows=4_000, columns=["id"])
    batches = list(sh.read_shard(shards[1], batch_size=300))
    assert all(b.num_rows <= 300 for b in batches)
    assert all(b.schema.names == ["id"] for b in batches)
    assert sum(b.num_rows for b in batches) == shards[1]["rows"]
    ids = [i for b in batches for i in b.column("id").to_pylist()]
    assert ids == sorted(ids)  # file order kept


def test_read_shard_detects_changed_file(dataset: Path) -> None:
    shards = sh.plan_parquet_shards(dataset / "b.parquet", target_rows=10**6)
    _write(dataset / "b.parquet", 0, 2_400, 1_000)  # rewritten with fewer rows
    with pytest.raises(sh.ShardError, match="changed since planning"):
        list(sh.read_shard(shards[0]))


def test_read_shard_rejects_other_descriptors() -> None:
    with pytest.raises(sh.ShardError):
        list(sh.read_shard({"kind": "sql"}))


def test_positional_event_ids_are_stable_across_plans(tmp_path: Path) -> None:
    path = tmp_path / "noid.parquet"
    pq.write_table(pa.table({"x": list(range(5_000))}), path, row_group_size=1_000)

    def ids(target: int) -> dict[int, str]:
        out = {}
        for s in sh.plan_parquet_shards(path, target_rows=target):
            for b in sh.read_shard(s, batch_size=333, event_id_prefix="bf1:"):
                out.update(zip(b.column("x").to_pylist(), b.column("_event_id").to_pylist()))
        return out

    a, b = ids(1_000), ids(3_000)
    assert a == b and len(set(a.values())) == 5_000
    assert a[0] == "bf1:noid.parquet:0:0" and a[4_999] == "bf1:noid.parquet:4:999"
    # an existing _event_id column is kept as is
    shard = sh.plan_parquet_shards(path.parent, target_rows=10**6)[0]
    assert "_event_id" in next(sh.read_shard(shard, event_id_prefix="p:")).schema.names


# ---------------------------------------------------------------------------------- SQL


@pytest.fixture
def db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE orders (id INTEGER, day TEXT, amount REAL)")
    rows = [(i, f"2024-01-{1 + i % 28:02d}", float(i)) for i in range(1, 1001)]
    rows += [(5000 + i, "2024-02-01", 1.0) for i in range(1000)]  # a dense cluster far away (skew)
    rows += [(None, "2024-03-01", 0.0)] * 3
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?)", rows)
    return conn


def _run(conn: sqlite3.Connection, shards: list[dict]) -> list[int | None]:
    out: list[int | None] = []
    for s in shards:
        sql, params = sh.key_range_query(s, columns=["id"], paramstyle="qmark")
        out.extend(r[0] for r in conn.execute(sql, params))
    return out


def test_plan_key_ranges_ints() -> None:
    shards = sh.plan_key_ranges("orders", "id", min_key=1, max_key=100, n_shards=4)
    assert [(s["lower"], s["upper"], s["upper_inclusive"]) for s in shards] == [
        (1, 26, False), (26, 51, False), (51, 76, False), (76, 100, True)]
    assert json.loads(json.dumps(shards)) == shards
    # more shards than keys -> one key each
    assert len(sh.plan_key_ranges("t", "id", min_key=5, max_key=7, n_shards=10)) == 3
    assert len(sh.plan_key_ranges("t", "id", min_key=5, max_key=5, n_shards=10)) == 1
    assert len(sh.plan_key_ranges("t", "id", min_key=0, max_key=10**6, target_rows=1000, row_count=10**6)) == 1000
    with pytest.raises(sh.ShardError):
        sh.plan_key_ranges("t", "id", min_key=5, max_key=1, n_shards=2)
    with pytest.raises(sh.ShardError):
        sh.plan_key_ranges("t", "id", min_key=1, max_key=5)  # neither n_shards nor target/count


def test_plan_key_ranges_dates_and_datetimes() -> None:
    shards = sh.plan_key_ranges("t", "day", min_key=date(2024, 1, 1), max_key=date(2024, 1, 31), n_shards=3)
    assert shards[0]["key_type"] == "date" and shards[0]["lower"] == "2024-01-01"
    assert shards[-1]["upper"] == "2024-01-31"
    sql, params = sh.key_range_query(shards[0])
    assert params == {"lower": date(2024, 1, 1), "upper": date.fromisoformat(shards[0]["upper"])}
    ts = sh.plan_key_ranges("t", "ts", min_key=datetime(2024, 1, 1, tzinfo=UTC),
                            max_key=datetime(2024, 1, 2, tzinfo=UTC), n_shards=4)
    assert [s["lower"] for s in ts][1] == "2024-01-01T06:00:00+00:00"
    assert sh.key_range_query(ts[1])[1]["lower"] == datetime(2024, 1, 1, 6, tzinfo=UTC)


def test_key_range_query_styles() -> None:
    s = sh.plan_key_ranges("public.orders", "id", min_key=1, max_key=10, n_shards=2, where="amount > 0")[1]
    sql, params = sh.key_range_query(s)
    assert sql == ("SELECT * FROM public.orders WHERE id >= %(lower)s AND id <= %(upper)s AND (amount > 0) "
                   "ORDER BY id")
    assert params == {"lower": 6, "upper": 10}
    assert sh.key_range_query(s, paramstyle="dollar", order_by_key=False)[0].endswith("id >= $1 AND id <= $2 AND (amount > 0)")
    assert sh.key_range_query(s, paramstyle="named")[0].count(":lower") == 1
    assert sh.key_range_query(s, paramstyle="qmark")[1] == [6, 10]
    q = sh.plan_key_ranges("SELECT id, x FROM t WHERE y = 1", "id", min_key=1, max_key=2, n_shards=1)[0]
    assert "FROM (SELECT id, x FROM t WHERE y = 1) AS _shard_src WHERE" in sh.key_range_query(q)[0]
    with pytest.raises(sh.ShardError):
        sh.plan_key_ranges("orders; DROP TABLE x", "id", min_key=1, max_key=2, n_shards=1)
    with pytest.raises(sh.ShardError):
        sh.plan_key_ranges("orders", "id) OR (1=1", min_key=1, max_key=2, n_shards=1)


def test_plan_sql_shards_equal_width(db: sqlite3.Connection) -> None:
    shards = sh.plan_sql_shards(db, "orders", "id", target_rows=500)
    assert len(shards) == 4  # 2000 non-null keys / 500
    got = _run(db, shards)
    assert sorted(got) == list(range(1, 1001)) + list(range(5000, 6000))  # NULL keys excluded


def test_plan_sql_shards_balanced_handles_skew(db: sqlite3.Connection) -> None:
    shards = sh.plan_sql_shards(db, "orders", "id", target_rows=500, balanced=True, include_nulls=True)
    got = _run(db, shards)
    assert sorted(x for x in got if x is not None) == list(range(1, 1001)) + list(range(5000, 6000))
    assert got.count(None) == 3  # the first shard also takes the NULL keys
    counts = []
    for s in shards:
        sql, params = sh.key_range_query(s, columns="COUNT(*)", paramstyle="qmark", order_by_key=False)
        counts.append(db.execute(sql, params).fetchone()[0])
    assert max(counts) - min(counts) <= 3  # equal row counts, whatever the key gaps


def test_plan_sql_shards_strings_and_callable(db: sqlite3.Connection) -> None:
    def fetch(sql: str) -> list[tuple]:
        return db.execute(sql).fetchall()

    shards = sh.plan_sql_shards(fetch, "orders", "day", target_rows=700, balanced=True)
    assert shards[0]["key_type"] == "str"
    days = []
    for s in shards:
        sql, params = sh.key_range_query(s, columns=["day"], paramstyle="qmark")
        days.extend(r[0] for r in db.execute(sql, params))
    assert len(days) == 2003


def test_plan_sql_shards_empty_and_duckdb(db: sqlite3.Connection) -> None:
    assert sh.plan_sql_shards(db, "orders", "id", where="id < 0") == []
    nulls = sh.plan_sql_shards(db, "orders", "id", where="id IS NULL", include_nulls=True)
    assert len(nulls) == 1 and _run(db, nulls) == [None, None, None]
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT range AS id FROM range(10000)")
    shards = sh.plan_sql_shards(con, "t", "id", target_rows=3000, balanced=True)
    total = 0
    for s in shards:
        sql, params = sh.key_range_query(s, columns="COUNT(*)", paramstyle="qmark", order_by_key=False)
        total += con.execute(sql, params).fetchone()[0]
    assert total == 10000 and len(shards) == 4


def test_plan_from_boundaries() -> None:
    shards = sh.plan_key_ranges_from_boundaries("t", "k", ["m", "a", "t", "a"], max_key="z")
    assert [(s["lower"], s["upper"]) for s in shards] == [("a", "m"), ("m", "t"), ("t", "z")]
    assert shards[-1]["upper_inclusive"] and not shards[0]["upper_inclusive"]


# ---------------------------------------------------------------------------------- reports


def test_aggregate_reports() -> None:
    reports = [
        {"shard_id": "s-0", "rows": 100, "accepted": 98, "rejected": 2, "requests": 1, "elapsed": 2.0,
         "started_at": 10.0, "finished_at": 12.0, "worker": "w1"},
        {"shard_id": "s-1", "rows": 300, "accepted": 300, "rejected": 0, "requests": 3, "elapsed": 5.0,
         "started_at": 11.0, "finished_at": 16.0, "worker": "w2"},
        {"shard_id": "s-2", "rows": 100, "accepted": 100, "rejected": 0, "requests": 1, "elapsed": 1.0,
         "started_at": 16.0, "finished_at": 17.0, "worker": "w1"},
        None,
    ]
    agg = sh.aggregate_reports(reports)
    assert agg["shards"] == 3 and agg["missing"] == 1
    assert (agg["rows"], agg["accepted"], agg["rejected"], agg["requests"]) == (500, 498, 2, 5)
    assert agg["wall_seconds"] == 7.0 and agg["task_seconds"] == 8.0 and agg["slowest_shard_seconds"] == 5.0
    assert agg["rows_per_second"] == round(500 / 7, 1)
    assert agg["by_worker"] == {"w1": {"shards": 2, "rows": 200}, "w2": {"shards": 1, "rows": 300}}
    assert sh.aggregate_reports([])["rows_per_second"] is None


def test_module_imports_no_airflow() -> None:
    import subprocess
    import sys

    code = "import sys, airflow_provider_instasent.sharding; print(any(m.split('.')[0] == 'airflow' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


@pytest.mark.integration
def test_aggregate_real_shard_reports(client, tmp_path: Path) -> None:
    """Shard reports of real ingest runs (the engine on the emulator) add up, with wall time and rate."""
    import time

    from airflow_provider_instasent.ingest import write_contacts

    n = 1_000
    table = pa.table({"_user_id": [f"agg-{i}" for i in range(n)], "plan": ["pro"] * n})
    pq.write_table(table, tmp_path / "contacts.parquet", row_group_size=100)
    shards = sh.plan_parquet_shards(tmp_path, target_rows=250)
    assert len(shards) == 4
    reports = []
    for shard in shards:
        reports.append(write_contacts(client, sh.read_shard(shard), progress_interval=0).to_dict())
        time.sleep(0.01)  # shards run one after another: the wall time spans all of them
    for r in reports:
        assert r["started_at"] <= r["finished_at"] and r["worker"]
    totals = sh.aggregate_reports([*reports, None])
    assert (totals["shards"], totals["missing"], totals["rows"], totals["accepted"]) == (4, 1, n, n)
    assert totals["wall_seconds"] >= sum(r["elapsed_s"] for r in reports) - 0.01
    assert totals["wall_seconds"] == pytest.approx(reports[-1]["finished_at"] - reports[0]["started_at"], abs=0.002)
    assert totals["rows_per_second"] == pytest.approx(n / totals["wall_seconds"], rel=0.01)
    assert totals["by_worker"] == {reports[0]["worker"]: {"shards": 4, "rows": n}}
