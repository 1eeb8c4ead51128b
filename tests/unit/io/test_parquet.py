"""Parquet output: row groups per batch, local paths and ObjectStoragePath, no partial files."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from airflow_provider_instasent.export import Export
from airflow_provider_instasent.io.parquet import write_parquet
from airflow_provider_instasent.io.paths import locate
from tests.support import file_object_storage_path
from tests.support.export_fakes import FakeClient


def test_local_parquet_row_groups_and_schema(tmp_path):
    export = Export(FakeClient(n=1050), batch_size=400)
    target = tmp_path / "out" / "audience.parquet"
    result = write_parquet(export.batches(), str(target), export.schema)
    assert result.rows == 1050 and result.row_groups == 3 and result.bytes == target.stat().st_size
    meta = pq.ParquetFile(target).metadata
    assert meta.num_row_groups == 3 and meta.num_rows == 1050
    assert [meta.row_group(i).num_rows for i in range(3)] == [400, 400, 250]
    table = pq.read_table(target)
    assert table.schema.equals(export.schema)  # types and field metadata survive
    assert table.column("audience_id").to_pylist()[:2] == ["aud-000000", "aud-000001"]
    assert list(tmp_path.joinpath("out").iterdir()) == [target]  # no temp file left


def test_failed_write_leaves_no_partial_file(tmp_path):
    export = Export(FakeClient(n=1000, fail_after=3), batch_size=100)
    target = tmp_path / "audience.parquet"
    with pytest.raises(RuntimeError, match="scroll failed"):
        write_parquet(export.batches(), target, export.schema)
    assert list(tmp_path.iterdir()) == []


def test_object_storage_path(tmp_path):
    pytest.importorskip("airflow.sdk")

    export = Export(FakeClient(n=120, version="osp"), "events", batch_size=50)
    target = file_object_storage_path(f"file://{tmp_path}/lake/events.parquet")
    result = write_parquet(export.batches(), target, export.schema, compression="snappy")
    assert result.rows == 120 and result.row_groups == 3
    table = pq.read_table(tmp_path / "lake" / "events.parquet")
    assert table.num_rows == 120 and table.schema.names[0] == "_event_id"


def test_object_storage_failure_leaves_nothing(tmp_path):
    pytest.importorskip("airflow.sdk")

    export = Export(FakeClient(n=1000, fail_after=4), batch_size=100)
    target = file_object_storage_path(f"file://{tmp_path}/lake/audience.parquet")
    with pytest.raises(RuntimeError, match="scroll failed"):
        write_parquet(export.batches(), target, export.schema)
    assert not target.exists()


def test_path_kinds(tmp_path):
    pytest.importorskip("airflow.sdk")

    from airflow_provider_instasent.operators.base import object_path

    assert locate(str(tmp_path / "a.parquet")).path == str(tmp_path / "a.parquet")
    assert locate(tmp_path / "a.parquet").local
    assert locate(f"file://{tmp_path}/a.parquet").path == str(tmp_path / "a.parquet")
    assert locate(file_object_storage_path(f"file://{tmp_path}/a.parquet")).path == str(tmp_path / "a.parquet")
    # a URL and its connection become an ObjectStoragePath in the Airflow layer only
    osp = object_path("s3://bucket/key.parquet")
    assert type(osp).__name__ == "ObjectStoragePath" and str(osp) == "s3://bucket/key.parquet"
    assert object_path(str(tmp_path)) == str(tmp_path)


def test_object_storage_failure_keeps_the_previous_file():
    """On an fsspec store (fsspec's in-memory one, through a UPath: the class ObjectStoragePath
    extends) a failed export leaves the previous file whole and no temporary object; the
    loader reads it back through the same adapter."""
    import uuid

    ObjectStoragePath = pytest.importorskip("upath").UPath

    from airflow_provider_instasent.ingest import open_source

    base = f"memory://bucket-{uuid.uuid4().hex[:8]}/lake"
    target = ObjectStoragePath(f"{base}/audience.parquet")
    first = write_parquet(Export(FakeClient(n=120), batch_size=50).batches(), target,
                          Export(FakeClient(n=1)).schema)
    assert first.rows == 120 and first.path.startswith("memory://") and first.path.endswith("lake/audience.parquet")
    with pytest.raises(RuntimeError, match="scroll failed"):
        write_parquet(Export(FakeClient(n=1000, fail_after=4), batch_size=100).batches(), target,
                      Export(FakeClient(n=1)).schema)
    assert [p.name for p in ObjectStoragePath(base).iterdir()] == ["audience.parquet"]
    assert open_source(target).total_rows == 120
    assert sum(b.num_rows for b in open_source(ObjectStoragePath(base)).batches()) == 120
