"""Fault injection through the emulator: nothing lost, nothing duplicated.

The emulator injects 5xx answers and dropped connections (before it applies a request, and
*after*, the case where only the ``_event_id`` prevents a duplicate), rate-limit storms and
latency spikes past the client's read timeout (the request is applied after the client gave
up). After each run the emulator's store is compared with the source row by row.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_instasent.export import Export
from airflow_provider_instasent.ingest import ProjectSpecs, RequestFailedError, write_contacts, write_events

from . import dataset
from .conftest import make_client
from .helpers import (
    ALL_FAULTS,
    assert_accounting,
    assert_rejects,
    rejects_by_row,
    state,
    stored_contacts,
    stored_event_ids,
)

pytestmark = pytest.mark.integration


def assert_contacts_stored(emulator, ds: dataset.Dataset) -> None:
    stored = stored_contacts(emulator)
    assert set(stored) == ds.valid_user_ids
    for user_id, expected in ds.contact_values.items():
        data = stored[user_id]
        assert {k: data.get(k) for k in expected} == expected, user_id


def assert_events_stored(emulator, ds: dataset.Dataset) -> None:
    ids = stored_event_ids(emulator)
    assert set(ids) == ds.stored_event_ids
    assert max(ids.values(), default=1) == 1


@pytest.mark.slow
@pytest.mark.usefixtures("quiet_retries")
def test_100k_events_and_20k_contacts_under_mixed_faults_then_export(emulator, tmp_path):
    """5xx and drops before/after applying on 10% of requests: ingest, then export, exactly once."""
    ds = dataset.build(20_000, 100_000, seed=11)
    emulator.set_faults(fault_rate=0.1, fault_kinds=ALL_FAULTS, seed=11)
    with make_client(emulator.base_url, timeout=(2.0, 10.0)) as client:
        contacts = write_contacts(client, ds.contacts, on_invalid="dead_letter",
                                  rejects_path=str(tmp_path / "contacts_rejects.parquet"))
        events = write_events(client, ds.events, on_invalid="dead_letter", max_in_flight=8,
                              rejects_path=str(tmp_path / "events_rejects.parquet"))

        # the faults really happened, and every one of them was absorbed by a retry
        assert contacts.retries > 0 and events.retries > 0
        assert_accounting(contacts, rows=20_000, rejected=len(ds.bad_contacts))
        assert_accounting(events, rows=100_000, rejected=len(ds.event_rejects))
        assert contacts.rejected_api == events.rejected_api == 0
        # every invalid row is in the rejects (report and file) with its field and reason
        assert_rejects(contacts.rejects, ds.bad_contacts)
        assert_rejects(events.rejects, ds.event_rejects)
        assert_rejects(pq.read_table(tmp_path / "contacts_rejects.parquet").to_pandas(), ds.bad_contacts)
        assert_rejects(pq.read_table(tmp_path / "events_rejects.parquet").to_pandas(), ds.event_rejects)
        # the emulator holds every valid row exactly once
        counts = state(emulator.base_url)
        assert counts["contacts"]["dsapi"] == len(ds.valid_user_ids)
        assert counts["audience_contacts"] == len(ds.valid_user_ids)
        assert counts["events"] == len(ds.stored_event_ids)
        assert_contacts_stored(emulator, ds)
        assert_events_stored(emulator, ds)

        # export under the same faults: the exported tables equal the stored audience and events
        emulator.set_faults(fault_rate=0.0)
        clean = {c["id"] for c in client.scroll_audience()}
        emulator.set_faults(fault_rate=0.1, fault_kinds=ALL_FAULTS, seed=12)
        before = client.stats.snapshot()["retries"]
        audience = Export(client, "audience", batch_size=5_000).table()
        exported_events = Export(client, "events", batch_size=20_000).table()
        assert client.stats.snapshot()["retries"] > before
    emulator.set_faults(fault_rate=0.0)
    audience_ids = audience.column("audience_id").to_pylist()
    assert len(audience_ids) == len(set(audience_ids)) == len(clean)
    assert set(audience_ids) == clean
    assert set(audience.column("_user_id").to_pylist()) == ds.valid_user_ids
    event_ids = exported_events.column("_event_id").to_pylist()
    assert len(event_ids) == len(set(event_ids))
    assert set(event_ids) == ds.stored_event_ids


@pytest.mark.slow
@pytest.mark.usefixtures("quiet_retries")
def test_rate_limit_storm_is_absorbed(make_emulator):
    """A noisy neighbour drains the token's rate-limit bucket in bursts: 429s with Retry-After
    are waited out and retried; the result is exact."""
    emulator = make_emulator(rate_limit=6000)  # 100 requests/s per token and endpoint class
    ds = dataset.build(5_000, 20_000, seed=5)
    stop = threading.Event()
    drained = threading.Event()
    neighbour_429 = []

    def storm() -> None:
        with make_client(emulator.base_url, pace=False, max_retries=0, pool_size=16) as noisy, \
                ThreadPoolExecutor(16) as pool:
            def one(_: int) -> int:
                try:
                    noisy.push_contacts([{"_user_id": "noisy-neighbour"}])
                    return 0
                except Exception:
                    return 1

            while not stop.is_set():
                neighbour_429.append(sum(pool.map(one, range(150))))
                drained.set()
                stop.wait(0.5)

    thread = threading.Thread(target=storm, daemon=True)
    thread.start()
    drained.wait(30)  # the loader starts on an empty bucket
    try:
        with make_client(emulator.base_url, max_retries=30) as client:
            contacts = write_contacts(client, ds.contacts, on_invalid="skip")
            events = write_events(client, ds.events, on_invalid="skip")
    finally:
        stop.set()
        thread.join()
    assert sum(neighbour_429) > 0
    assert contacts.http_statuses.get(429, 0) + events.http_statuses.get(429, 0) > 0
    assert_accounting(contacts, rows=5_000, rejected=len(ds.bad_contacts))
    assert_accounting(events, rows=20_000, rejected=len(ds.event_rejects))
    stored = stored_contacts(emulator)
    stored.pop("noisy-neighbour", None)
    assert set(stored) == ds.valid_user_ids
    assert_events_stored(emulator, ds)


@pytest.mark.usefixtures("quiet_retries")
def test_latency_spikes_past_the_client_timeout(emulator):
    """Requests time out on the client (read timeout 0.25 s) while the server, 0.6 s later,
    still applies them; the retries are deduplicated. Events carry *derived* ids here."""
    ds = dataset.build(3_000, 10, seed=6)
    views = dataset.page_views(sorted(ds.valid_user_ids), 15_000)
    stop = threading.Event()

    def spikes() -> None:
        while not stop.is_set():
            emulator.set_faults(latency_ms=600)
            stop.wait(0.8)
            emulator.set_faults(latency_ms=0)
            stop.wait(0.3)

    thread = threading.Thread(target=spikes, daemon=True)
    thread.start()
    try:
        with make_client(emulator.base_url, timeout=(2.0, 0.25), max_retries=25) as client:
            contacts = write_contacts(client, ds.contacts, on_invalid="skip", max_in_flight=4)
            events = write_events(client, views, event_type="page_view", max_in_flight=4)
            timeouts = client.stats.snapshot()["no_response"]
    finally:
        stop.set()
        thread.join()
        emulator.set_faults(latency_ms=0)
    time.sleep(0.8)  # let the last late requests land: they must change nothing
    assert timeouts > 0 and contacts.retries + events.retries > 0
    assert_accounting(contacts, rows=3_000, rejected=len(ds.bad_contacts))
    assert_accounting(events, rows=15_000, rejected=0)
    assert_contacts_stored(emulator, ds)
    ids = stored_event_ids(emulator)
    assert len(ids) == 15_000 and max(ids.values()) == 1
    assert state(emulator.base_url)["events"] == 15_000


@pytest.mark.slow
@pytest.mark.usefixtures("quiet_retries")
def test_connections_dropped_before_and_after_applying(emulator):
    """30% of requests lose their connection: half before the server applies them, half after.
    Contacts repeat users across requests: the later row still wins."""
    ds = dataset.build(4_000, 20_000, seed=7)
    # every user appears twice; the second row (read later) carries the final plan
    contacts = pa.concat_tables([ds.contacts, ds.contacts.set_column(
        ds.contacts.schema.get_field_index("plan"), "plan", pa.array(["final"] * ds.contacts.num_rows))])
    emulator.set_faults(fault_rate=0.3, fault_kinds=["drop_before", "drop_after"], seed=7)
    with make_client(emulator.base_url, timeout=(2.0, 10.0)) as client:
        c_report = write_contacts(client, contacts, on_invalid="skip", max_items=50)
        e_report = write_events(client, ds.events, on_invalid="skip")
    emulator.set_faults(fault_rate=0.0)
    assert c_report.retries > 0 and e_report.retries > 0
    assert_accounting(c_report, rows=8_000, rejected=2 * len(ds.bad_contacts))
    assert_accounting(e_report, rows=20_000, rejected=len(ds.event_rejects))
    stored = stored_contacts(emulator)
    assert set(stored) == ds.valid_user_ids
    assert {data["plan"] for data in stored.values()} == {"final"}
    assert_events_stored(emulator, ds)


@pytest.mark.slow
@pytest.mark.usefixtures("quiet_retries")
def test_5xx_mid_scroll_export_to_sql_equals_the_audience(emulator, tmp_path, monkeypatch):
    """``InstasentToSqlOperator`` under 5xx and dropped connections mid-scroll: the table holds
    the audience, every contact once."""
    import json
    import sqlite3

    from airflow_provider_instasent.operators.export import InstasentToSqlOperator

    ds = dataset.build(5_000, 10, seed=8)
    with make_client(emulator.base_url) as client:
        write_contacts(client, ds.contacts, on_invalid="skip")
        clean = {c["id"] for c in client.scroll_audience()}
    assert len(clean) == len(ds.valid_user_ids)
    db = tmp_path / "warehouse.sqlite"
    monkeypatch.setenv("AIRFLOW_CONN_RELIABILITY_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    monkeypatch.setenv("AIRFLOW_CONN_INSTASENT_DEFAULT", json.dumps({
        "conn_type": "instasent", "host": emulator.base_url, "password": "demo-admin-token",
        "extra": {"project": "demo", "max_retries": 15}}))
    emulator.set_faults(fault_rate=0.15, fault_kinds=ALL_FAULTS, seed=8)
    op = InstasentToSqlOperator(task_id="export", sql_conn_id="reliability_sqlite", table="audience",
                                batch_size=1_000, progress_interval=0)
    result = op.execute(context={})
    emulator.set_faults(fault_rate=0.0)
    assert result["rows"] == len(clean)
    with sqlite3.connect(db) as conn:
        ids = [r[0] for r in conn.execute("SELECT audience_id FROM audience")]
        users = {r[0] for r in conn.execute('SELECT "_user_id" FROM audience')}
    assert len(ids) == len(set(ids)) and set(ids) == clean
    assert users == ds.valid_user_ids


@pytest.mark.usefixtures("quiet_retries")
def test_request_failing_after_all_retries_leaves_its_rows_unknown_and_a_rerun_completes(emulator, tmp_path):
    """A burst of 503s outlasts the client's retries: the run stops with RequestFailedError, the
    failed requests' rows are reported as ``unknown`` outcome (a 503 may come after the API
    stored them; stage ``unknown``), not rejected; the rest is skipped; re-running the same
    input then gives exactly the clean result."""
    ds = dataset.build(1_000, 12_000, seed=9)
    with make_client(emulator.base_url) as client:
        write_contacts(client, ds.contacts, on_invalid="skip")

    def source():  # the burst starts after three batches were read
        for i, batch in enumerate(ds.events.to_batches(max_chunksize=2_000)):
            if i == 3:
                emulator.set_faults(fault_rate=1.0, fault_kinds=["503"])
            yield batch

    with make_client(emulator.base_url, max_retries=2) as client, pytest.raises(RequestFailedError) as info:
        write_events(client, source(), on_invalid="skip", batch_rows=2_000, max_in_flight=2,
                     rejects_path=str(tmp_path / "rejects.parquet"))
    emulator.set_faults(fault_rate=0.0)
    report = info.value.report
    assert report.accepted + report.rejected + report.unknown + report.skipped == report.rows
    assert report.unknown > 0 and report.skipped > 0 and report.rejected_api == 0
    unknown_rows = {row for row, entries in rejects_by_row(report.rejects).items()
                    if any(stage == "unknown" for _, _, stage in entries)}
    assert len(unknown_rows) == report.unknown
    for row in unknown_rows:
        entries = rejects_by_row(report.rejects)[row]
        assert any(stage == "unknown" and "outcome unknown" in reason and "503" in reason
                   for _, reason, stage in entries)
    written = pq.read_table(tmp_path / "rejects.parquet").to_pandas()
    assert len(written) == len(report.rejects)
    partial = set(stored_event_ids(emulator))
    assert partial < ds.stored_event_ids

    with make_client(emulator.base_url) as client:
        rerun = write_events(client, ds.events, on_invalid="skip")
    assert_accounting(rerun, rows=12_000, rejected=len(ds.event_rejects))
    assert_events_stored(emulator, ds)


@pytest.mark.xfail(strict=True, reason="BUG: the contacts chunker's hold-back waits for the earlier request's "
                   "*outcome*, but an attempt that timed out on the client can still be applied by the server "
                   "later, after the later row: 'later row wins' (docs/ingest.md) does not hold across timeouts")
@pytest.mark.usefixtures("quiet_retries")
def test_the_later_row_wins_even_when_an_earlier_attempt_lands_late(emulator):
    """Row A (plan=old) and row B (plan=new) of one user. A's first attempts wait 1.5 s on the
    server and time out on the client (0.3 s); A's retry succeeds once the spike is over, then B
    is sent and applied. The stale attempts of A land afterwards."""
    df = pa.table({"_user_id": ["late", "late"], "plan": ["old", "new"]})
    with make_client(emulator.base_url, timeout=(2.0, 0.3), max_retries=10) as client:
        specs = ProjectSpecs.load(client, kind="contacts")
        emulator.set_faults(latency_ms=1500)

        def end_spike_after_the_first_timeout() -> None:
            while client.stats.snapshot()["no_response"] < 1:
                time.sleep(0.01)
            emulator.set_faults(latency_ms=0)

        watcher = threading.Thread(target=end_spike_after_the_first_timeout, daemon=True)
        watcher.start()
        try:
            report = write_contacts(client, df, specs=specs)
        finally:
            watcher.join(timeout=10)
    assert report.accepted == 2 and report.retries > 0
    time.sleep(2.0)  # every stale attempt has landed by now
    assert stored_contacts(emulator)["late"]["plan"] == "new"


@pytest.mark.usefixtures("quiet_retries")
@pytest.mark.parametrize("disposition", ["replace", "append", "merge"])
def test_an_export_that_fails_mid_scroll_changes_nothing(disposition, emulator, tmp_path, monkeypatch):
    """The scroll starts, then every request fails (retries exhausted): the SQL table keeps its
    previous contents, no staging table is left, and the previous Parquet file is untouched."""
    import json
    import sqlite3

    from airflow_provider_instasent.operators.export import InstasentToParquetOperator, InstasentToSqlOperator

    ds = dataset.build(3_000, 10, seed=10)
    with make_client(emulator.base_url) as client:
        write_contacts(client, ds.contacts, on_invalid="skip")
    db = tmp_path / "warehouse.sqlite"
    monkeypatch.setenv("AIRFLOW_CONN_RELIABILITY_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    monkeypatch.setenv("AIRFLOW_CONN_INSTASENT_DEFAULT", json.dumps({
        "conn_type": "instasent", "host": emulator.base_url, "password": "demo-admin-token",
        "extra": {"project": "demo", "max_retries": 0}}))
    sql = InstasentToSqlOperator(task_id="sql", sql_conn_id="reliability_sqlite", table="audience",
                                 write_disposition=disposition, batch_size=500, progress_interval=0)
    parquet = InstasentToParquetOperator(task_id="pq", path=str(tmp_path / "out" / "audience.parquet"),
                                         batch_size=500, progress_interval=0)
    assert sql.execute(context={})["rows"] == len(ds.valid_user_ids)
    assert parquet.execute(context={})["rows"] == len(ds.valid_user_ids)
    before = pq.read_table(tmp_path / "out" / "audience.parquet")
    with make_client(emulator.base_url) as client:
        client.push_contacts([{"_user_id": f"new-{i}"} for i in range(10)])

    for op in (sql, parquet):
        emulator.store.snapshots.clear()
        emulator.set_faults(latency_ms=20)
        stop = threading.Event()

        def fail_once_the_scroll_started(stop: threading.Event = stop) -> None:
            while not stop.is_set() and not emulator.store.snapshots._items:
                time.sleep(0.001)
            emulator.set_faults(fault_rate=1.0, fault_kinds=["503"])

        watcher = threading.Thread(target=fail_once_the_scroll_started, daemon=True)
        watcher.start()
        try:
            with pytest.raises(Exception, match="503"):
                op.execute(context={})
        finally:
            stop.set()
            watcher.join()
            emulator.set_faults(fault_rate=0.0, latency_ms=0)

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM audience").fetchone()[0] == len(ds.valid_user_ids)
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["audience"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["audience.parquet"]
    assert pq.read_table(tmp_path / "out" / "audience.parquet").equals(before)
