"""End to end against the emulator: real scrolls, faults, scopes, privacy levels, operators."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq
import pytest
import requests

from airflow_provider_instasent import InstasentClient
from airflow_provider_instasent.client.errors import PermissionDeniedError
from airflow_provider_instasent.export import Export, read_audience, read_events, read_segment
from tests.conftest import ADMIN_TOKEN, PROJECT, READONLY_TOKEN
from tests.support.export_fakes import fetch, tables

pytestmark = pytest.mark.integration

PLANS = ("pro", "free", "business")


def seed_contacts(client: InstasentClient, n: int, start: int = 0) -> None:
    for offset in range(start, start + n, 100):
        batch = [
            {"_user_id": f"user-{i}", "_email": f"user{i}@example.com", "_full_name": f"User {i}",
             "_phone_mobile": f"+3460{i:07d}", "plan": PLANS[i % 3], "loyalty_points": i,
             "birthday": "1990-02-03", "_client_tags": ["a", f"t{i % 2}"], "_is_subscribed_sms": "1"}
            for i in range(offset, min(start + n, offset + 100))
        ]
        result = client.push_contacts(batch, sync=True)
        assert result.ok, result.errors[:3]


def seed_events(client: InstasentClient, n: int, users: int) -> None:
    for offset in range(0, n, 100):
        batch = [
            {"_user_id": f"user-{i % users}", "_event_id": f"evt-{i}", "_event_type": "page_view",
             "_event_date": "2024-03-01T12:00:00.000Z", "_event_parameters": {"url": f"/p/{i}"}}
            for i in range(offset, min(n, offset + 100))
        ]
        result = client.push_events(batch, sync=True)
        assert result.ok, result.errors[:3]


def test_audience_export_types_and_filter(client):
    seed_contacts(client, 150)
    df = read_audience(client)
    assert len(df) == 150 and df["audience_id"].is_unique
    row = df.set_index("_user_id").loc["user-4"]
    assert row["plan"] == "free" and row["loyalty_points"] == 4.0 and row["birthday"] == dt.date(1990, 2, 3)
    assert row["_is_subscribed_sms"] is True or row["_is_subscribed_sms"] == True  # noqa: E712
    assert list(row["_client_tags"]) == ["a", "t0"] and list(row["_datasources"]) == ["dsapi"]
    assert len(row["_ds_contact_ids"]) == 1
    assert str(df["created_at"].dtype) == "datetime64[ms, UTC]"
    pro = {"type": "group", "join": "and",
           "children": [{"type": "attribute_condition", "key": "plan", "operator": "eq", "values": ["pro"]}]}
    assert len(read_audience(client, filter=pro)) == 50


class DecodedPagesOnly:
    """The client without its raw scroll pages: the export converts decoded pages instead."""

    scroll_modes = frozenset({"entities", "pages"})

    def __init__(self, client: InstasentClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_raw_and_decoded_pages_export_the_same_table(client):
    seed_contacts(client, 260)
    raw = Export(client, batch_size=100, page_size=30)
    decoded = Export(DecodedPagesOnly(client), batch_size=100, page_size=30)  # type: ignore[arg-type]
    assert raw.raw_pages() is not None and decoded.raw_pages() is None
    table = raw.table()
    assert table.num_rows == 260 and table.equals(decoded.table())
    assert raw.stats.pages == decoded.stats.pages == 9 and raw.stats.total_hits == 260


def test_segments_and_events(client):
    seed_contacts(client, 90)
    assert len(read_segment(client, "pro_plan")) == 30
    both = read_segment(client, "by_plan", "pro|business")
    assert len(both) == 60 and set(both["plan"]) == {"pro", "business"}
    seed_events(client, 230, users=90)
    events = read_events(client)
    assert len(events) == 230 and events["_event_id"].is_unique
    assert events["_event_parameters"].str.startswith('{"url":"/p/').all()
    assert events["audience_id"].notna().all()


def test_scroll_survives_rate_limit_and_faults(emu):
    """429s, 5xx and dropped connections mid-scroll: every contact exactly once."""
    with InstasentClient(token=ADMIN_TOKEN, project=PROJECT, base_url=emu, max_retries=15, pace=False,
                         backoff_base=0.01, backoff_max=0.1, timeout=(2.0, 5.0)) as client:
        seed_contacts(client, 600)
        requests.post(f"{emu}/_emulator/faults", timeout=10, json={
            "fault_rate": 0.25, "fault_kinds": ["500", "502", "503", "drop_before", "drop_after"],
            "rate_limit": 600, "seed": 5}).raise_for_status()
        export = Export(client, batch_size=100, page_size=20)
        ids = [i for b in export.batches() for i in b.column("_user_id").to_pylist()]
        stats = client.stats.snapshot()
    assert len(ids) == 600 and set(ids) == {f"user-{i}" for i in range(600)}
    assert export.stats.pages >= 30
    failures = sum(n for s, n in stats["statuses"].items() if s >= 500) + stats["no_response"]
    assert stats["retries"] > 0 and failures > 0, stats


def test_rate_limited_scroll_gets_429s_and_recovers(emu):
    with InstasentClient(token=ADMIN_TOKEN, project=PROJECT, base_url=emu, max_retries=20, pace=False,
                         backoff_base=0.01, backoff_max=0.2) as client:
        seed_contacts(client, 150)
        # 2 requests per second, a bucket of 2: the third quick page request is answered 429
        requests.post(f"{emu}/_emulator/faults", json={"rate_limit": 120}, timeout=10).raise_for_status()
        ids = [i for b in Export(client, page_size=30).batches() for i in b.column("audience_id").to_pylist()]
        stats = client.stats.snapshot()
    assert len(ids) == 150 == len(set(ids))
    assert stats["statuses"].get(429, 0) > 0, stats


def test_readonly_token_cannot_scroll(emu):
    with InstasentClient(token=READONLY_TOKEN, project=PROJECT, base_url=emu, max_retries=0) as client:
        for source in ("audience", "events"):
            with pytest.raises(PermissionDeniedError) as err:
                list(Export(client, source).batches())
            assert err.value.status == 403
            assert "PROJECT_AUDIENCE_LIST" in str(err.value) or "PROJECT_AUDIENCE_DATA_EVENTS" in str(err.value)
        with pytest.raises(PermissionDeniedError, match="PROJECT_AUDIENCE_LIST"):
            read_audience(client)


@pytest.fixture(scope="module")
def privacy_emulator() -> Iterator[str]:
    """An emulator whose fixture adds a default-level and a basic-level token."""
    from airflow_provider_instasent.emulator import running
    from airflow_provider_instasent.emulator.fixture import default_fixture_dict

    config = default_fixture_dict()
    base = ["PROJECT_AUDIENCE_READ", "PROJECT_AUDIENCE_LIST"]
    config["tokens"] += [
        {"token": "level-default", "projects": [PROJECT], "scopes": base},
        {"token": "level-basic", "projects": [PROJECT], "scopes": [*base, "PROJECT_AUDIENCE_DATA_BASIC"]},
    ]
    with running(config) as url:
        yield url


def test_privacy_level_decides_values_not_columns(privacy_emulator):
    url = privacy_emulator
    frames: dict[str, Any] = {}
    for token in (ADMIN_TOKEN, "level-basic", "level-default"):
        with InstasentClient(token=token, project=PROJECT, base_url=url) as client:
            if token == ADMIN_TOKEN:
                seed_contacts(client, 20)
            frames[token] = read_audience(client).set_index("_user_id").sort_index()
    full, basic, default = frames[ADMIN_TOKEN], frames["level-basic"], frames["level-default"]
    assert list(full.columns) == list(basic.columns) == list(default.columns)  # stable schema
    assert len(full) == len(basic) == len(default) == 20
    assert full["plan"].notna().all() and full["_email"].notna().all()
    # basic: phone, email, country, names, booleans; no custom attributes
    assert basic["_email"].notna().all() and basic["_phone_mobile"].notna().all()
    assert basic["_is_subscribed_sms"].notna().all() and basic["_full_name"].notna().all()
    assert basic["plan"].isna().all() and basic["birthday"].isna().all() and basic["loyalty_points"].isna().all()
    # default: full name and user id only
    assert default["_full_name"].notna().all() and default.index.notna().all()
    assert default["_email"].isna().all() and default["_is_subscribed_sms"].isna().all()
    assert default["plan"].isna().all()
    # not privacy-gated
    assert default["audience_id"].notna().all() and default["_datasources"].notna().all()


# --- operators ------------------------------------------------------------------------------

def test_sql_operator_duckdb_replace_then_merge(instasent_conn, client, duckdb_conn_id, unique_table):
    from airflow_provider_instasent.operators.export import InstasentToSqlOperator

    seed_contacts(client, 120)
    op = InstasentToSqlOperator(task_id="to_duckdb", sql_conn_id=duckdb_conn_id, table=unique_table,
                                progress_interval=0.01)
    out = op.execute(context={})
    assert out["rows"] == 120 and out["total_hits"] == 120 and out["invalid_values"] == 0
    assert out["target"] == {"conn_id": duckdb_conn_id, "table": unique_table, "dialect": "duckdb",
                             "write_disposition": "replace"}
    seed_contacts(client, 30, start=120)
    client.push_contacts([{"_user_id": "user-0", "plan": "enterprise"}], sync=True)
    merge = InstasentToSqlOperator(task_id="merge", sql_conn_id=duckdb_conn_id, table=unique_table,
                                   write_disposition="merge")
    assert merge.execute(context={})["rows"] == 150
    assert fetch(duckdb_conn_id, f"SELECT count(*), count(DISTINCT audience_id) FROM {unique_table}") == [(150, 150)]
    assert fetch(duckdb_conn_id, f"SELECT plan FROM {unique_table} WHERE _user_id = 'user-0'") == [("enterprise",)]
    assert [t for t in tables(duckdb_conn_id) if t != unique_table] == []


def test_sql_operator_postgres_segment_and_events(instasent_conn, client, postgres_conn_id, pg_cleanup,
                                                  unique_table):
    from airflow_provider_instasent.operators.export import InstasentToSqlOperator

    pg_cleanup.extend([unique_table, unique_table + "_ev"])
    seed_contacts(client, 60)
    seed_events(client, 40, users=60)
    seg = InstasentToSqlOperator(task_id="seg", source="segment", segment="by_plan", parameter="pro",
                                 sql_conn_id=postgres_conn_id, table=unique_table, write_disposition="append")
    assert seg.execute(context={})["rows"] == 20
    ev = InstasentToSqlOperator(task_id="ev", source="events", sql_conn_id=postgres_conn_id,
                                table=unique_table + "_ev", write_disposition="merge")
    assert ev.execute(context={})["rows"] == 40
    assert fetch(postgres_conn_id, f"SELECT count(*), min(plan), max(plan) FROM {unique_table}") == [(20, "pro", "pro")]
    rows = fetch(postgres_conn_id, f"SELECT count(*), min(_event_date) FROM {unique_table}_ev")
    assert rows == [(40, dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC))]


def test_sql_operator_sqlite_and_bad_table(instasent_conn, client, sqlite_conn_id, unique_table):
    from airflow_provider_instasent.client.errors import InstasentConfigError
    from airflow_provider_instasent.operators.export import InstasentToSqlOperator

    seed_contacts(client, 25)
    op = InstasentToSqlOperator(task_id="lite", sql_conn_id=sqlite_conn_id, table=unique_table,
                                attributes=["plan", "_email"])
    assert op.execute(context={})["rows"] == 25
    cols = [r[1] for r in fetch(sqlite_conn_id, f"PRAGMA table_info({unique_table})")]
    assert cols == ["audience_id", "created_at", "updated_at", "plan", "_email", "_datasources", "_ds_contact_ids"]
    bad = InstasentToSqlOperator(task_id="bad", sql_conn_id=sqlite_conn_id, table="x; DROP TABLE y")
    with pytest.raises(InstasentConfigError, match="invalid table name"):
        bad.execute(context={})


def test_parquet_operator(instasent_conn, client, tmp_path):
    from airflow_provider_instasent.operators.export import InstasentToParquetOperator

    seed_contacts(client, 130)
    path = tmp_path / "audience.parquet"
    op = InstasentToParquetOperator(task_id="pq", path=str(path), batch_size=50)
    out = op.execute(context={})
    assert out["rows"] == 130 and out["target"]["row_groups"] == 3 and out["target"]["path"] == str(path)
    table = pq.read_table(path)
    assert table.num_rows == 130 and table.schema.names[:3] == ["audience_id", "created_at", "updated_at"]
    assert "template_fields" in dir(op) and "path" in op.template_fields and "filter" in op.template_fields
