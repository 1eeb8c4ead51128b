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
from airflow_provider_instasent.ingest.engine import CHECK_PART
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
    assert EVENTS > 4 * CHECK_PART  # one batch, several parts
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
        if searched == 15:  # the lookups of the third part of the batch
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
    assert report.accepted + report.rejected + report.unknown + report.skipped == report.rows == EVENTS
    assert report.skipped >= EVENTS - 3 * CHECK_PART
