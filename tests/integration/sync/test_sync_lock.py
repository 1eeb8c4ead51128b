"""Two runs of one sync_id at once: the second refuses with a clear message; the state stays whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import requests

from airflow_provider_instasent.sync import LOCKS_TABLE, STATE_TABLE, SyncLockedError, sync_contacts
from tests.conftest import ADMIN_TOKEN, PROJECT, ROOT

from .test_sync_contacts import model, rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_CHILD = textwrap.dedent("""
    import json, sys
    import pandas as pd
    import psycopg2
    from airflow_provider_instasent import InstasentClient
    from airflow_provider_instasent.sync import sync_contacts
    url, state, target = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    if target["kind"] == "postgres":
        state = psycopg2.connect(target["url"], options="-c search_path=" + target["schema"])
    df = pd.DataFrame({"_user_id": [f"u{i}" for i in range(1500)], "plan": ["free"] * 1500,
                       "loyalty_points": [float(i) for i in range(1500)]})
    with InstasentClient(token=sys.argv[4], project=sys.argv[5], base_url=url) as client:
        report = sync_contacts(client, df, sync_id="crm", state=state, max_in_flight=1, max_items=100)
    print(json.dumps(report.to_dict()))
""")


def _target(state) -> dict:
    if isinstance(state, str):
        return {"kind": "duckdb"}
    with state.cursor() as cur:
        cur.execute("SHOW search_path")
        schema = cur.fetchone()[0]
    return {"kind": "postgres", "url": os.environ["INSTASENT_TEST_POSTGRES_URL"], "schema": schema}


def _first_run_holds_the_lock(state) -> bool:
    if isinstance(state, str):  # DuckDB: the file is locked by the other process
        import duckdb

        try:
            duckdb.connect(state).close()
        except duckdb.IOException:
            return True
        return False
    try:
        return bool(rows(state, f"SELECT COUNT(*) FROM {LOCKS_TABLE}")[0][0])
    except Exception:
        state.rollback()
        return False


def test_a_second_concurrent_run_refuses_and_the_state_stays_whole(client, emu, state):
    requests.post(f"{emu}/_emulator/faults", json={"latency_ms": 400}, timeout=10).raise_for_status()
    target = _target(state)
    path = state if isinstance(state, str) else ""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, emu, path, json.dumps(target), ADMIN_TOKEN, PROJECT],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while not _first_run_holds_the_lock(state):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(SyncLockedError) as info:
            sync_contacts(client, model(1500, plan={1: "pro"}), sync_id="crm", state=state)
        message = str(info.value)
        assert "sent nothing" in message
        if not isinstance(state, str):
            assert "locked by run" in message and f"DELETE FROM {LOCKS_TABLE}" in message
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    finally:
        if child.poll() is None:
            child.kill()
    first = json.loads(out.strip().splitlines()[-1])
    assert (first["added"], first["accepted"]) == (1500, 1500)
    requests.post(f"{emu}/_emulator/faults", json={"latency_ms": 0}, timeout=10).raise_for_status()
    assert rows(state, f"SELECT COUNT(*) FROM {STATE_TABLE} WHERE accepted_hash IS NOT NULL")[0][0] == 1500
    after = sync_contacts(client, model(1500), sync_id="crm", state=state)
    assert (after.unchanged, after.requests) == (1500, 0)


def test_a_lock_left_by_a_killed_run_on_this_host_is_taken_over(client, state):
    import socket

    sync_contacts(client, model(3), sync_id="crm", state=state)  # creates the tables
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    from airflow_provider_instasent.sync.store import Store

    with Store.open(state, "crm", "killed-run") as store:
        store.tx([(f"INSERT INTO {LOCKS_TABLE} (sync_id, run_id, host, pid, acquired_at) VALUES (?, ?, ?, ?, ?)",
                   ("crm", "killed-run", socket.gethostname(), dead.pid, "2026-01-01T00:00:00.000Z"))])
    assert sync_contacts(client, model(3), sync_id="crm", state=state).unchanged == 3
    assert rows(state, f"SELECT COUNT(*) FROM {LOCKS_TABLE}")[0][0] == 0


def test_a_run_killed_mid_send_loses_nothing_and_the_next_resends_at_most_what_was_in_flight(client, emu, state):
    """SIGKILL while rows are being sent: the next run takes the lock over, re-sends only the rows
    without a recorded acceptance (at most the unflushed outcomes plus the requests in flight),
    and a third run makes no write call."""
    from tests.conftest import emulator_state

    flush_rows, request = 200, 100  # the child flushes every 200 outcomes; one request of 100 rows at a time
    child_code = _CHILD.replace("max_in_flight=1, max_items=100)", f"max_in_flight=1, max_items=100, "
                                f"flush_rows={flush_rows})")
    assert child_code != _CHILD
    requests.post(f"{emu}/_emulator/faults", json={"latency_ms": 300}, timeout=10).raise_for_status()
    path = state if isinstance(state, str) else ""
    child = subprocess.Popen(
        [sys.executable, "-c", child_code, emu, path, json.dumps(_target(state)), ADMIN_TOKEN, PROJECT],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while emulator_state(emu)["contacts"]["dsapi"] < 500:  # a few flushes done, more rows to go
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    requests.post(f"{emu}/_emulator/faults", json={"latency_ms": 0}, timeout=10).raise_for_status()
    stored = emulator_state(emu)["contacts"]["dsapi"]
    recorded = rows(state, f"SELECT COUNT(*) FROM {STATE_TABLE} WHERE accepted_hash IS NOT NULL")[0][0]
    assert 0 < recorded <= stored < 1500
    # accepted but not recorded (re-sent next run): the unflushed outcomes (< flush_rows), at most one
    # answered request waiting for the run's thread, and the one in flight
    assert stored - recorded < flush_rows + 2 * request
    after = sync_contacts(client, model(1500), sync_id="crm", state=state)  # takes over the dead run's lock
    assert (after.to_send, after.accepted, after.failed) == (1500 - recorded, 1500 - recorded, 0)
    assert after.unchanged == recorded
    assert emulator_state(emu)["contacts"]["dsapi"] == 1500
    final = sync_contacts(client, model(1500), sync_id="crm", state=state)
    assert (final.unchanged, final.requests) == (1500, 0)
