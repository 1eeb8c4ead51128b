"""The streaming engine and the dataframe API, on a fake scrolling client."""

from __future__ import annotations

import gc
import time

import pandas as pd
import pyarrow as pa
import pytest

from airflow_provider_instasent.client.errors import InstasentConfigError
from airflow_provider_instasent.export import (
    Export,
    privacy_level,
    read_audience,
    read_audience_arrow,
    read_events,
    read_events_arrow,
    read_segment,
    read_segment_arrow,
)
from airflow_provider_instasent.export.engine import prefetch
from tests.support.export_fakes import FakeClient


def test_batches_have_the_stable_schema_and_every_row():
    client = FakeClient(n=1050)
    export = Export(client, batch_size=400, page_size=100)
    batches = list(export.batches())
    assert [b.num_rows for b in batches] == [400, 400, 250]
    assert all(b.schema.equals(export.schema, check_metadata=True) for b in batches)
    ids = pa.concat_arrays([b.column("audience_id") for b in batches]).to_pylist()
    assert ids == [f"aud-{i:06d}" for i in range(1050)]
    stats = export.stats.as_dict()
    assert stats["rows"] == 1050 and stats["pages"] == 11 and stats["batches"] == 3
    assert stats["total_hits"] == 1050 and stats["invalid_values"] == 0


def test_empty_export_has_the_schema_and_no_rows():
    export = Export(FakeClient(n=0))
    table = export.table()
    assert table.num_rows == 0 and table.schema.equals(export.schema)


def test_read_ahead_is_bounded():
    """Flat memory: the fetch thread never runs more than prefetch_pages ahead."""
    client = FakeClient(n=20_000)
    export = Export(client, batch_size=100, page_size=10, prefetch_pages=40)
    assert export.chunk_pages == 10
    it = export.batches()
    for consumed in range(1, 6):
        next(it)
        time.sleep(0.05)  # let the producer run as far ahead as it can
        # consumed pages + the queue (prefetch_pages) + one chunk being built + one blocked in put
        assert client.fetched <= consumed * 10 + 40 + 2 * 10
    it.close()
    assert client.closed.wait(5)  # the producer stopped and closed the scroll
    assert client.fetched < 200


def test_scroll_error_is_raised_to_the_consumer():
    export = Export(FakeClient(n=1000, fail_after=3), batch_size=50)
    with pytest.raises(RuntimeError, match="scroll failed"):
        list(export.batches())


def test_prefetch_propagates_and_stops():
    def gen():
        yield 1
        yield 2
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        list(prefetch(gen(), 1))
    stopped = []

    def endless():
        try:
            i = 0
            while True:
                i += 1
                yield i
        finally:
            stopped.append(True)

    it = prefetch(endless(), 2)
    assert next(it) == 1
    it.close()
    for _ in range(50):
        if stopped:
            break
        time.sleep(0.02)
    assert stopped == [True]


def test_sources_and_filters_reach_the_client():
    client = FakeClient(n=5)
    root = {"type": "group", "join": "and", "children": []}
    list(Export(client, "audience", filter={"root": root}).batches())
    list(Export(client, "segment", segment="pro_plan", parameter="pro|free", filter=root).batches())
    list(Export(client, "events").batches())
    assert client.calls == [("audience", root), ("segment", ("pro_plan", "pro|free", root)), ("events", None)]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"source": "contacts"}, "source must be"),
    ({"source": "segment"}, "needs segment"),
    ({"source": "audience", "segment": "x"}, "only valid with source='segment'"),
    ({"source": "events", "attributes": ["plan"]}, "attributes"),
    ({"batch_size": 0}, "batch_size"),
    ({"page_size": 101}, "page_size"),
    ({"filter": "plan = pro"}, "filter must be a mapping"),
])
def test_bad_configuration_is_refused(kwargs, match):
    with pytest.raises(InstasentConfigError, match=match):
        Export(FakeClient(), **kwargs)


def test_dataframe_api():
    client = FakeClient(n=120)
    df = read_audience(client)
    assert isinstance(df, pd.DataFrame) and len(df) == 120
    assert list(df.columns[:3]) == ["audience_id", "created_at", "updated_at"]
    assert str(df["created_at"].dtype) == "datetime64[ms, UTC]"
    assert df["loyalty_points"].dtype == "float64"
    assert list(df.loc[1, "_client_tags"]) == ["a", "t1"]

    seg = read_segment(client, "pro_plan", "pro")
    assert len(seg) == 120 and client.calls[-1] == ("segment", ("pro_plan", "pro", None))
    events = read_events(client)
    assert list(events.columns) == ["_event_id", "_event_type", "_event_date", "_user_id", "audience_id",
                                    "datasource", "received_at", "_event_parameters"]
    nullable = read_audience(client, dtype_backend="numpy_nullable")
    assert str(nullable["_is_subscribed_sms"].dtype) == "boolean"
    arrow_backed = read_audience(client, attributes=["plan"], dtype_backend="pyarrow")
    assert list(arrow_backed.columns) == ["audience_id", "created_at", "updated_at", "_user_id", "plan",
                                          "_datasources", "_ds_contact_ids"]
    assert isinstance(arrow_backed["_datasources"].dtype, pd.ArrowDtype)


def test_arrow_readers_stream():
    client = FakeClient(n=250)
    reader = read_audience_arrow(client, batch_size=100)
    assert isinstance(reader, pa.RecordBatchReader)
    assert [b.num_rows for b in reader] == [100, 100, 50]
    assert read_segment_arrow(client, "vip").read_all().num_rows == 250
    assert read_events_arrow(client).read_all().num_rows == 250


def test_privacy_level_from_scopes():
    assert privacy_level(["PROJECT_AUDIENCE_READ"]) == "default"
    assert privacy_level(["PROJECT_AUDIENCE_READ", "PROJECT_AUDIENCE_DATA_BASIC"]) == "basic"
    assert privacy_level(["PROJECT_AUDIENCE_DATA_BASIC", "PROJECT_AUDIENCE_DATA_FULL"]) == "full"


def test_memory_stays_flat_for_a_large_audience():
    """50,000 contacts through batches of 2,000: peak Arrow memory is a few batches, not all."""
    client = FakeClient(n=50_000)
    export = Export(client, batch_size=2_000, prefetch_pages=8)
    gc.collect()
    base = pa.total_allocated_bytes()
    peak = 0
    rows = 0
    for batch in export.batches():
        rows += batch.num_rows
        peak = max(peak, pa.total_allocated_bytes() - base)
        del batch
    assert rows == 50_000
    one_batch = 2_000 * 600  # generous bytes per row
    assert peak < 4 * one_batch, peak


def test_export_modules_import_no_airflow():
    """The dataframe side must stay light: no Airflow import until an operator is used."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import airflow_provider_instasent.export, airflow_provider_instasent.io.sql\n"
        "import airflow_provider_instasent.io.parquet, airflow_provider_instasent.io.shards\n"
        "import airflow_provider_instasent.sharding, airflow_provider_instasent.ingest.report\n"
        "bad = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_attributes_keep_the_user_id_unless_told_otherwise():
    client = FakeClient(n=5)
    df = read_audience(client, attributes=["plan"])
    assert list(df.columns) == ["audience_id", "created_at", "updated_at", "_user_id", "plan", "_datasources",
                                "_ds_contact_ids"]
    assert df["_user_id"].tolist() == [f"user-{i}" for i in range(5)]
    assert "_user_id" not in read_audience(client, attributes=["plan"], keep_user_id=False).columns
    explicit = read_audience(client, attributes=["plan", "_user_id"])
    assert list(explicit.columns[3:5]) == ["plan", "_user_id"]  # as asked, not twice
    assert "_user_id" in read_segment(client, "vip", attributes=["plan"]).columns
    assert "_user_id" in read_audience_arrow(client, attributes=["plan"]).schema.names
    assert "_user_id" in read_audience(client).columns  # no attributes: every column, as before
