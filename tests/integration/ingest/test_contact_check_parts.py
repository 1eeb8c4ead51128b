"""The contact check runs ahead of the sends (issue 19): the lookups of a whole batch start at
once and each part of the batch is sent as soon as its own contacts are settled, on the
emulator with a latency. The verdicts stay those of a check made before any send."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest
import requests

from airflow_provider_instasent.client.errors import ServerError
from airflow_provider_instasent.ingest import write_contacts, write_events
from airflow_provider_instasent.ingest.engine import CHECK_PART, FIRST_BATCH_ROWS
from tests.conftest import emulator_state
from tests.support.ingest_helpers import ORDER

pytestmark = pytest.mark.integration

USERS = 1_500
EVENTS = 3_000


def _events() -> pd.DataFrame:
    return pd.DataFrame({
        "_user_id": [f"u-{i % USERS}" for i in range(EVENTS)],
        "_event_id": [f"e-{i}" for i in range(EVENTS)],
        "_event_date": ["2024-05-01T10:00:00Z"] * EVENTS,
        "order_id": [f"O{i}" for i in range(EVENTS)],
        "amount": [10.0] * EVENTS,
    })


@pytest.fixture
def shop(emu, client):
    """Every user but those ending in 7 exists (``?_sync``, so applied before the events)."""
    users = [f"u-{i}" for i in range(USERS) if i % 10 != 7]
    report = write_contacts(client, pd.DataFrame({"_user_id": users}), sync=True, progress_interval=0)
    assert report.accepted == len(users)
    return emu


def _timed(client, names: tuple[str, ...]) -> list[tuple[str, float, float]]:
    """Record (method, start, end) of ``names`` on this client instance."""
    calls: list[tuple[str, float, float]] = []
    lock = threading.Lock()
    for name in names:
        original = getattr(client, name)

        def timed(*args, _original=original, _name=name, **kwargs):
            t0 = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                with lock:
                    calls.append((_name, t0, time.perf_counter()))

        setattr(client, name, timed)
    return calls


def test_parts_are_sent_while_later_lookups_are_on_the_wire(shop, client):
    assert EVENTS > 4 * CHECK_PART  # several parts (a first batch of FIRST_BATCH_ROWS, then the rest)
    requests.post(f"{shop}/_emulator/faults", json={"latency_ms": 30}, timeout=10).raise_for_status()
    calls = _timed(client, ("push", "search_audience"))
    report = write_events(client, _events(), event_type=ORDER, on_invalid="skip", progress_interval=0)

    missing = [i for i in range(EVENTS) if (i % USERS) % 10 == 7]
    assert report.missing_contacts == report.rejected == len(missing)
    assert report.accepted == EVENTS - len(missing) == emulator_state(shop)["events"]
    assert report.accepted + report.rejected + report.unknown + report.skipped == report.rows == EVENTS
    rejects = report.rejects.sort_values("source_row")
    assert rejects["source_row"].tolist() == missing
    assert all(r == f"contact '{u}' does not exist in datasource 'dsapi'"
               for r, u in zip(rejects["reason"], rejects["_user_id"]))
    searches = [c for c in calls if c[0] == "search_audience"]
    assert len(searches) == USERS // 50 == report.contact_check_calls - len({f"u-{i}" for i in range(7, USERS, 10)})
    first_push = min(c[1] for c in calls if c[0] == "push")
    assert first_push < max(c[2] for c in searches)  # sent before the batch's last lookup answered


def test_a_lookup_failing_mid_batch_sends_the_checked_parts_and_skips_the_rest(shop, client):
    calls = _timed(client, ("push", "get_contact"))
    searched = 0
    original = client.search_audience

    def failing(*args, **kwargs):
        nonlocal searched
        searched += 1
        if searched == 15:  # the lookups of the second part of the first batch (FIRST_BATCH_ROWS)
            raise ServerError(503, "POST", "/audience/search", "emulated by the test")
        return original(*args, **kwargs)

    client.search_audience = failing
    # two lookups at a time, 20 ms each: lookups of later parts are still queued when it stops
    requests.post(f"{shop}/_emulator/faults", json={"latency_ms": 20}, timeout=10).raise_for_status()
    with pytest.raises(Exception, match="contact check failed") as info:
        write_events(client, _events(), event_type=ORDER, on_invalid="skip", progress_interval=0, max_in_flight=2)
    report = info.value.report
    sent = sum(1 for c in calls if c[0] == "push")
    assert 0 < report.accepted < EVENTS and report.accepted == emulator_state(shop)["events"]
    assert report.requests == sent
    # lookups still queued when the run stopped were never made, and are not counted
    assert report.contact_check_calls == searched + sum(1 for c in calls if c[0] == "get_contact")
    assert report.accepted + report.rejected + report.unknown + report.skipped == report.rows == FIRST_BATCH_ROWS
    assert report.skipped >= FIRST_BATCH_ROWS - CHECK_PART


def test_the_next_batch_is_looked_up_while_this_one_is_sent(shop, client):
    """Batches of 500 events, one request in flight: the lookups of the second batch's users
    start before the first batch's first push answers (the engine reads one batch ahead), so
    a batch never waits on the wire for its new users while the pipe drains."""
    frame = _events().iloc[:1_000]  # u-0 .. u-999: batch 1 holds u-0..499, batch 2 u-500..999
    requests.post(f"{shop}/_emulator/faults", json={"latency_ms": 50}, timeout=10).raise_for_status()
    calls = _timed(client, ("push", "search_audience"))
    searched: list[tuple[float, list[str]]] = []
    timed_search = client.search_audience

    def search(root, **kwargs):
        searched.append((time.perf_counter(), list(root["values"])))
        return timed_search(root, **kwargs)

    client.search_audience = search
    report = write_events(client, frame, event_type=ORDER, on_invalid="skip", progress_interval=0,
                          max_in_flight=1, batch_rows=500)

    assert report.rows == 1_000 and report.accepted + report.rejected == 1_000
    assert report.missing_contacts == sum(1 for i in range(1_000) if i % 10 == 7)
    second_batch = min(t for t, ids in searched if any(int(u[2:]) >= 500 for u in ids))
    first_push_answered = min(c[2] for c in calls if c[0] == "push")
    assert second_batch < first_push_answered
    assert report.contact_check_calls == len(searched) + 100  # one exact lookup per missing user


def test_a_source_error_read_ahead_stops_the_run_after_the_batches_before_it(shop, client, tmp_path):
    """The engine reads one batch ahead for the check; a file that cannot be read there still
    stops the run where it stopped before: after the batches before it were handed to the
    sender, every row read accounted for (what was not answered yet is skipped)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_provider_instasent.ingest import SourceReadError

    good = _events().iloc[:600]
    pq.write_table(pa.Table.from_pandas(good, preserve_index=False), tmp_path / "a.parquet")
    pq.write_table(pa.Table.from_pandas(_events().iloc[600:900], preserve_index=False), tmp_path / "b.parquet",
                   row_group_size=100)
    data = (tmp_path / "b.parquet").read_bytes()
    half = len(data) // 2
    (tmp_path / "b.parquet").write_bytes(data[:40] + b"\x00" * (half - 40) + data[half:])  # row groups, footer intact
    with pytest.raises(SourceReadError, match=r"b\.parquet") as info:
        write_events(client, str(tmp_path), event_type=ORDER, on_invalid="skip", progress_interval=0,
                     batch_rows=200)
    report = info.value.report
    assert report.rows == 600 and report.accepted > 0  # the three batches of a.parquet, then the error
    assert report.accepted == emulator_state(shop)["events"]
    assert report.rows == report.accepted + report.rejected + report.skipped


def test_a_failing_lookup_costs_only_its_own_id_the_answer(shop, client):
    """Ids share a future per search batch; an id whose exact lookup fails (here the empty
    id, which the client refuses to put in a path) must not fail the other ids of its batch:
    only asking about it raises."""
    from airflow_provider_instasent.client.errors import InstasentConfigError
    from airflow_provider_instasent.ingest.existence import ContactCheck

    check = ContactCheck(client, None, max_in_flight=2)
    try:
        check.ahead(["u-1", "", "u-7", "u-2"])  # u-7 does not exist; "" cannot be looked up
        assert check.missing(["u-1", "u-2"]) == {}
        assert set(check.missing(["u-7", "u-1"])) == {"u-7"}
        with pytest.raises(InstasentConfigError):
            check.missing([""])
    finally:
        check.close()
