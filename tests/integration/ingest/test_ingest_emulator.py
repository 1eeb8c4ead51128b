"""The engine against the emulator over real HTTP."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from airflow_provider_instasent.ingest import (
    AutomationsGuardError,
    RejectedRowsError,
    SqlSource,
    write_contacts,
    write_events,
)
from tests.conftest import emulator_state
from tests.support.ingest_helpers import ORDER, contacts, orders

pytestmark = pytest.mark.integration


def data(client, user_id: str) -> dict:
    contact = client.get_contact(user_id)
    return contact.get("contactData", contact)


def automations(url: str) -> list[dict]:
    return requests.get(f"{url}/_emulator/automations", timeout=10).json()["events"]


def set_faults(url: str, **settings) -> None:
    requests.post(f"{url}/_emulator/faults", json=settings, timeout=10).raise_for_status()


def events_count(url: str) -> int:
    return emulator_state(url)["events"]


def test_contacts_are_upserted_with_coercions(emu, client):
    df = pd.DataFrame({
        "id": ["c1", "c2"],
        "plan": ["pro", None],
        "birthday": pd.to_datetime(["1990-05-17", "2001-01-31"]),
        "_accepts_marketing_sms": [True, False],
        "_client_tags": [["vip", "new"], None],
        "ignored": [1, 2],
    })
    report = write_contacts(client, df, columns={"id": "_user_id", "ignored": None},
                            consent_fields=["_accepts_marketing_sms"])
    assert (report.accepted, report.rejected) == (2, 0)
    assert emulator_state(emu)["contacts"]["dsapi"] == 2
    c1 = data(client, "c1")
    assert c1["birthday"] == "1990-05-17" and c1["plan"] == "pro" and c1["_client_tags"] == ["vip", "new"]
    # nulls="omit" keeps stored values; nulls="null" clears them
    write_contacts(client, pd.DataFrame({"_user_id": ["c1"], "plan": [None]}))
    assert data(client, "c1")["plan"] == "pro"
    write_contacts(client, pd.DataFrame({"_user_id": ["c1"], "plan": [None]}), nulls="null")
    assert data(client, "c1").get("plan") is None


def _as_parquet_file(df, path):
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=70)
    return str(path)


@pytest.mark.parametrize("form", ["dataframe", "table", "reader", "parquet", "glob", "directory"])
def test_events_from_every_input(emu, client, tmp_path, form):
    write_contacts(client, contacts(50))
    df = orders(230)
    table = pa.Table.from_pandas(df, preserve_index=False)
    if form == "dataframe":
        data = df
    elif form == "table":
        data = table
    elif form == "reader":
        data = table.to_reader(max_chunksize=64)
    else:
        (tmp_path / "d").mkdir()
        _as_parquet_file(df.iloc[:100], tmp_path / "d" / "a.parquet")
        _as_parquet_file(df.iloc[100:], tmp_path / "d" / "b.parquet")
        data = {"parquet": [str(tmp_path / "d" / "a.parquet"), str(tmp_path / "d" / "b.parquet")],
                "glob": str(tmp_path / "d" / "*.parquet"), "directory": tmp_path / "d"}[form]
    report = write_events(client, data, event_type=ORDER, batch_rows=50)
    assert (report.rows, report.accepted, report.rejected, report.skipped) == (230, 230, 0, 0)
    assert events_count(emu) == 230


def test_dry_run_stores_nothing_and_reports_automations(emu, client):
    write_contacts(client, contacts(50))
    before = emulator_state(emu)
    df = orders(120)
    df.loc[:9, "_event_date"] = pd.Timestamp.now(tz="UTC")
    df.loc[5, "amount"] = None
    report = write_events(client, df, event_type=ORDER, dry_run=True, on_invalid="skip")
    assert report.dry_run and (report.accepted, report.rejected) == (119, 1)
    assert report.would_fire_automations == 9
    assert emulator_state(emu) == before and automations(emu) == []
    dry_contacts = write_contacts(client, contacts(10, prefix="new-"), dry_run=True)
    assert dry_contacts.accepted == 10 and emulator_state(emu) == before


def test_rerunning_the_same_input_creates_no_duplicates(emu, client, tmp_path):
    write_contacts(client, contacts(50))
    path = _as_parquet_file(orders(500), tmp_path / "orders.parquet")
    first = write_events(client, path, event_type=ORDER)
    second = write_events(client, path, event_type=ORDER)
    assert first.accepted == second.accepted == 500
    assert events_count(emu) == 500


def test_lost_responses_and_5xx_are_retried_without_duplicates(emu, client):
    write_contacts(client, contacts(50))
    set_faults(emu, fault_rate=0.3, fault_kinds=["500", "503", "drop_before", "drop_after"], seed=7)
    report = write_events(client, orders(1000), event_type=ORDER, max_in_flight=4)
    set_faults(emu, fault_rate=0.0)
    assert (report.accepted, report.rejected) == (1000, 0) and report.retries > 0
    assert events_count(emu) == 1000


def test_api_rejects_go_to_the_rejects_file(emu, client, tmp_path):
    path = tmp_path / "rejects.parquet"
    df = contacts(30).assign(colour=["red"] * 10 + [None] * 20)
    report = write_contacts(client, df, unknown_columns="send", on_invalid="dead_letter", rejects_path=str(path))
    assert (report.accepted, report.rejected_api) == (20, 10)
    written = pq.read_table(path).to_pandas()
    assert written.source_row.tolist() == list(range(10))
    assert set(written.field) == {"colour"} and set(written.stage) == {"api"}
    assert written._user_id.tolist() == [f"user-{i}" for i in range(10)]
    assert "unknown attribute" in written.reason[0]


def test_policies_over_http(emu, client):
    write_contacts(client, contacts(50))
    df = orders(200)
    df.loc[[3, 150], "currency"] = "EURO"
    with pytest.raises(RejectedRowsError):
        write_events(client, df, event_type=ORDER)
    assert events_count(emu) == 0  # the first batch already held a bad row: nothing was sent
    report = write_events(client, df, event_type=ORDER, on_invalid="skip", max_rejected_ratio=0.05)
    assert (report.accepted, report.rejected) == (198, 2) and events_count(emu) == 198
    with pytest.raises(RejectedRowsError, match="max_rejected_ratio"):
        write_events(client, df, event_type=ORDER, on_invalid="skip", max_rejected_ratio=0.001)


def test_automations_guard_over_http(emu, client):
    write_contacts(client, contacts(50))
    df = orders(100)
    df.loc[[1, 2, 3], "_event_date"] = pd.Timestamp.now(tz="UTC")
    with pytest.raises(AutomationsGuardError):
        write_events(client, df, event_type=ORDER, automations="refuse")
    assert events_count(emu) == 0 and automations(emu) == []
    report = write_events(client, df, event_type=ORDER, automations="warn")
    assert report.would_fire_automations == 3 == len(automations(emu))


def test_events_for_unknown_contacts_are_rejects_not_silent_accepts(emu, client):
    """The API accepts events of unknown contacts and never stores them: the contact check
    makes them rejects, row by row; with the check off they count as unverified."""
    report = write_events(client, orders(20), event_type=ORDER, on_invalid="skip")
    assert (report.accepted, report.rejected, report.missing_contacts, events_count(emu)) == (0, 20, 20, 0)
    assert sorted(report.rejects["source_row"]) == list(range(20))
    assert set(report.rejects["field"]) == {"_user_id"} and set(report.rejects["stage"]) == {"local"}
    assert report.rejects["reason"].str.contains("does not exist in datasource 'dsapi'").all()
    with pytest.raises(RejectedRowsError, match="cannot vouch for"):  # on_invalid="fail" stops, nothing sent
        write_events(client, orders(3), event_type=ORDER)
    unchecked = write_events(client, orders(20), event_type=ORDER, check_contacts=False)
    assert (unchecked.accepted, unchecked.unverified, events_count(emu)) == (20, 20, 0)  # accepted, not stored
    with_user_data = orders(5).assign(_user_data=[{"plan": "pro"}] * 5)
    report = write_events(client, with_user_data, event_type=ORDER)  # _user_data creates the contact: no check
    assert report.accepted == 5 and report.contact_check_calls == 0 and events_count(emu) == 5
    assert data(client, "user-0")["plan"] == "pro"


def test_mixed_event_types_with_event_parameters_column(emu, client):
    write_contacts(client, contacts(5))
    df = pd.DataFrame({
        "_user_id": ["user-1", "user-2", "user-3"],
        "_event_type": [ORDER, "page_view", ORDER],
        "_event_date": ["2024-01-01T10:00:00Z"] * 3,
        "_event_parameters": [{"order_id": "a", "amount": 1}, {"url": "https://x"}, {"order_id": "b", "amount": 2}],
    })
    report = write_events(client, df)
    assert report.accepted == 3 and events_count(emu) == 3


def test_sqlite_source(emu, client, tmp_path, monkeypatch):
    write_contacts(client, contacts(50))
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (customer TEXT, id TEXT, total REAL, ts TEXT)")
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)",
                         [(f"user-{i % 50}", f"o{i}", i * 1.5, f"2024-03-01T10:{i % 60:02d}:00Z") for i in range(321)])
    with sqlite3.connect(db) as conn:  # a plain DB-API connection: no Airflow connection needed
        source = SqlSource("SELECT customer, id, total, ts FROM orders", conn, batch_rows=100)
        report = write_events(client, source, event_type=ORDER,
                              columns={"customer": "_user_id", "id": "order_id", "total": "amount",
                                       "ts": "_event_date"})
    assert report.accepted == 321 and events_count(emu) == 321


@pytest.mark.postgres
def test_postgres_source_uses_a_server_side_cursor(emu, client, postgres_url, monkeypatch):
    import uuid

    import psycopg2

    write_contacts(client, contacts(50))
    table = f"ingest_test_{uuid.uuid4().hex[:8]}"
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (user_id text, order_id text, amount numeric(10,2), "
                    f"created timestamptz, params jsonb)")
        cur.execute(f"INSERT INTO {table} SELECT 'user-' || (i % 50), 'o' || i, i / 4.0, "
                    f"timestamptz '2024-01-01 00:00+00' + i * interval '1 minute', "
                    f"jsonb_build_object('currency', 'EUR') FROM generate_series(1, 2345) AS i")
    try:
        from urllib.parse import urlparse

        u = urlparse(postgres_url)
        monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({
            "conn_type": "postgres", "host": u.hostname, "port": u.port or 5432, "login": u.username,
            "password": u.password, "schema": u.path.lstrip("/")}))
        from airflow_provider_instasent.operators.base import sql_hook

        source = SqlSource(f"SELECT user_id AS _user_id, order_id, amount, created AS _event_date FROM {table}",
                           sql_hook("warehouse"), batch_rows=500)
        report = write_events(client, source, event_type=ORDER)
        assert source.server_side
        assert report.accepted == 2345 and events_count(emu) == 2345
    finally:
        with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE {table}")


@pytest.mark.parametrize("kind", ["sqlite3", "duckdb", "sqlalchemy"])
def test_rejects_table_on_a_plain_connection(emu, client, tmp_path, kind):
    """A notebook writes rejects to a DB-API or SQLAlchemy connection: no Airflow connection."""
    if kind == "sqlite3":
        conn = sqlite3.connect(tmp_path / "rejects.db")
    elif kind == "duckdb":
        import duckdb

        conn = duckdb.connect(str(tmp_path / "rejects.duckdb"))
    else:
        sqlalchemy = pytest.importorskip("sqlalchemy")
        conn = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'rejects.db'}")
    frame = pd.DataFrame({"_user_id": ["ok-1", "", "ok-2", None]})
    report = write_contacts(client, frame, on_invalid="dead_letter", rejects_table="ingest_rejects",
                            rejects_conn=conn, run_id="nb-1")
    assert (report.accepted, report.rejected) == (2, 2)
    query = "SELECT source_row, field, stage, run_id FROM ingest_rejects ORDER BY source_row"
    if kind == "sqlalchemy":
        with conn.connect() as c:
            rows = [tuple(r) for r in c.exec_driver_sql(query).fetchall()]
        conn.dispose()
    else:
        rows = [tuple(r) for r in conn.execute(query).fetchall()]  # the lent connection is still open
        conn.close()
    assert rows == [(1, "_user_id", "local", "nb-1"), (3, "_user_id", "local", "nb-1")]


def test_a_corrupt_parquet_file_stops_with_a_report(emu, client, tmp_path):
    """A file that cannot be read past some row: a SourceReadError naming it, with the report of
    what was sent before (the rows read are all accounted for), never a raw ArrowInvalid."""
    from airflow_provider_instasent.ingest import SourceReadError

    pq.write_table(pa.table({"_user_id": [f"c-{i}" for i in range(300)]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"_user_id": [f"d-{i}" for i in range(300)]}), tmp_path / "b.parquet",
                   row_group_size=100)
    data = (tmp_path / "b.parquet").read_bytes()
    half = len(data) // 2
    (tmp_path / "b.parquet").write_bytes(data[:40] + b"\x00" * (half - 40) + data[half:])  # row groups, footer intact
    with pytest.raises(SourceReadError, match=r"b\.parquet") as info:
        write_contacts(client, str(tmp_path), progress_interval=0, batch_rows=100)
    report = info.value.report
    # the first file was read whole; what was not sent when the run stopped is counted as skipped
    assert report.status == "failed" and report.rows >= 300 and report.rejected == 0
    assert report.rows == report.accepted + report.skipped and report.accepted > 0


def test_the_engine_widens_the_connection_pool_to_max_in_flight(emu):
    """max_in_flight reaches the HTTP pool through the engine, in a notebook as in a DAG."""
    from airflow_provider_instasent import InstasentClient
    from tests.conftest import ADMIN_TOKEN, PROJECT

    with InstasentClient(token=ADMIN_TOKEN, project=PROJECT, base_url=emu, pool_size=4) as client:
        assert client.pool_size == 4
        report = write_contacts(client, contacts(300), max_in_flight=24, progress_interval=0)
        assert report.accepted == 300 and client.pool_size == 24
        write_contacts(client, contacts(10), max_in_flight=2, progress_interval=0)
        assert client.pool_size == 24  # never narrowed under a running job
