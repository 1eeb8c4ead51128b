"""Every input becomes a bounded stream of Arrow record batches."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_instasent.ingest import IngestSchemaError, SqlSource, open_source
from airflow_provider_instasent.ingest.coerce import objects_text
from airflow_provider_instasent.ingest.sources import (
    ColumnMapper,
    ParquetSource,
    SpooledSource,
)
from airflow_provider_instasent.io.sql import rows_to_batch
from tests.support import file_object_storage_path


def rows(source) -> list[dict]:
    return [r for b in source.batches() for r in b.to_pylist()]


def sample(n: int = 25) -> pd.DataFrame:
    return pd.DataFrame({"_user_id": [f"u{i}" for i in range(n)], "n": range(n)})


def test_dataframe_table_batch_and_reader():
    df = sample()
    for data in (df, pa.Table.from_pandas(df, preserve_index=False),
                 pa.RecordBatch.from_pandas(df, preserve_index=False)):
        source = open_source(data, batch_rows=10)
        assert source.reopenable and source.total_rows == 25
        assert [b.num_rows for b in source.batches()] == [10, 10, 5]
        assert rows(source) == df.to_dict("records")
    reader = pa.Table.from_pandas(df, preserve_index=False).to_reader(max_chunksize=7)
    source = open_source(reader, batch_rows=10)
    assert not source.reopenable and source.total_rows is None
    assert len(rows(source)) == 25
    with pytest.raises(RuntimeError, match="only once"):
        list(source.batches())


def test_mixed_object_columns_become_objects_columns():
    df = pd.DataFrame({"_user_id": ["a", "b", "c"], "amount": [1.5, "oops", 7.0]})
    batch = next(open_source(df).batches())
    assert objects_text(batch.column("amount")).to_pylist() == ["1.5", "oops", "7"]


def test_duplicate_column_names_are_named_whatever_the_source():
    df = pd.DataFrame([["a", 1, 2]], columns=["_user_id", "plan", "plan"])
    table = pa.table([["a"], [1], [2]], names=["_user_id", "plan", "plan"])
    for data in (df, table):
        batch = next(open_source(data).batches())
        with pytest.raises(IngestSchemaError, match="duplicate column names in the input: 'plan'"):
            ColumnMapper(None)(batch)


def test_iterables_and_callables():
    df = sample(12)
    source = open_source(iter([df.iloc[:5], pa.Table.from_pandas(df.iloc[5:], preserve_index=False)]), batch_rows=4)
    assert len(rows(source)) == 12
    assert len(rows(open_source(lambda: df))) == 12
    with pytest.raises(IngestSchemaError, match="cannot read int"):
        open_source(42)


def test_parquet_file_glob_directory_and_lists(tmp_path):
    for i in range(3):
        (tmp_path / "part" / f"k={i}").mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(sample(5 + i), preserve_index=False),
                       tmp_path / "part" / f"k={i}" / f"f{i}.parquet", row_group_size=3)
    one = tmp_path / "part" / "k=0" / "f0.parquet"
    assert open_source(str(one)).total_rows == 5
    assert open_source(tmp_path / "part").total_rows == 5 + 6 + 7
    globbed = open_source(str(tmp_path / "part" / "*" / "*.parquet"), batch_rows=4)
    assert globbed.total_rows == 18 and len(rows(globbed)) == 18
    assert max(b.num_rows for b in globbed.batches()) <= 4
    # one discovery rule for the loader and the shard planner: a file listed twice is read once
    listed = open_source([str(one), str(one)])
    assert len(rows(listed)) == 5
    with pytest.raises(IngestSchemaError, match="no such file"):
        open_source(str(tmp_path / "missing.parquet"))
    with pytest.raises(IngestSchemaError, match="no Parquet files"):
        ParquetSource(str(tmp_path / "*.csv"))


def test_parquet_reads_only_kept_columns(tmp_path):
    pq.write_table(pa.table({"_user_id": ["a"], "secret": ["x"]}), tmp_path / "a.parquet")
    source = ParquetSource(str(tmp_path / "a.parquet"), drop=["secret"])
    assert next(source.batches()).schema.names == ["_user_id"]


def test_object_storage_path(tmp_path):
    pytest.importorskip("airflow.sdk")

    pq.write_table(pa.Table.from_pandas(sample(9), preserve_index=False), tmp_path / "a.parquet")
    pq.write_table(pa.Table.from_pandas(sample(3), preserve_index=False), tmp_path / "b.parquet")
    directory = file_object_storage_path(f"file://{tmp_path}")
    assert open_source(directory).total_rows == 12
    assert len(rows(open_source(file_object_storage_path(f"file://{tmp_path}/*.parquet")))) == 12
    assert len(rows(open_source(f"file://{tmp_path}/a.parquet"))) == 9


def test_rows_to_batch_types_each_column():
    batch = rows_to_batch([(1, "a", None, {"x": 1}), (2, None, None, {"x": 2})], ["n", "s", "z", "p"])
    assert batch.schema.field("n").type == pa.int64()
    assert pa.types.is_null(batch.schema.field("z").type)
    assert pa.types.is_struct(batch.schema.field("p").type)
    assert rows_to_batch([(1,), ("x",)], ["mixed"]).column(0).to_pylist() == ["1", "x"]


def test_sqlite_source_streams_with_fetchmany(tmp_path, monkeypatch):
    db = tmp_path / "warehouse.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (user_id TEXT, amount REAL)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(f"u{i}", i / 2) for i in range(23)])
    monkeypatch.setenv("AIRFLOW_CONN_INGEST_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    pytest.importorskip("airflow")  # an Airflow connection: skipped in the analyst install
    from airflow_provider_instasent.operators.base import sql_hook

    query = "SELECT user_id AS _user_id, amount FROM t WHERE amount >= ? ORDER BY user_id"
    source = SqlSource(query, sql_hook("ingest_sqlite"), parameters=(0,), batch_rows=10)
    batches = list(source.batches())
    assert [b.num_rows for b in batches] == [10, 10, 3]
    assert batches[0].schema.names == ["_user_id", "amount"]
    assert not source.server_side
    # a plain DB-API connection works the same, without Airflow (and is not closed)
    with sqlite3.connect(db) as conn:
        lent = list(SqlSource(query, conn, parameters=(0,), batch_rows=10).batches())
        assert [b.num_rows for b in lent] == [10, 10, 3]
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (23,)
    with pytest.raises(IngestSchemaError, match="sql_conn_id"):
        SqlSource("SELECT 1")
    with pytest.raises(IngestSchemaError, match="sql_conn_id"):
        SqlSource("SELECT 1", "ingest_sqlite")  # a connection id is the operator's to resolve


def test_spooled_source_replays_a_one_shot_stream(tmp_path):
    df = sample(30)
    inner = open_source(pa.Table.from_pandas(df, preserve_index=False).to_reader(max_chunksize=8))
    spooled = SpooledSource(inner, directory=str(tmp_path))
    first, second = rows(spooled), rows(spooled)
    assert first == second == df.to_dict("records")
    assert spooled.total_rows == 30
    spooled.close()
    assert not list(tmp_path.iterdir())


def test_column_mapper_renames_and_drops():
    batch = pa.record_batch({"id": ["a"], "x": [1], "y": [2]})
    out = ColumnMapper({"id": "_user_id", "y": None})(batch)
    assert out.schema.names == ["_user_id", "x"]
    with pytest.raises(IngestSchemaError, match="appear twice"):
        ColumnMapper({"x": "id"})(batch)


def test_a_sql_column_of_mixed_values_is_coerced_by_the_same_rule():
    """SQLite types per value: 7.0 beside '7' is the text '7'; undecodable bytes are refused per row."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (_user_id, plan)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(7.0, "pro"), ("8", b"bytes"), ("9", 7.5), ("10", b"\xff")])
    batch = next(SqlSource("SELECT * FROM t", conn).batches())
    assert objects_text(batch.column("_user_id")).to_pylist() == ["7", "8", "9", "10"]
    plan = batch.column("plan")
    assert objects_text(plan).to_pylist() == ["pro", "bytes", "7.5", None]
    assert plan.field("instasent:error").to_pylist()[3] == "not UTF-8 text: b'\\xff'"
