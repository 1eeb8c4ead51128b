"""sync_events: only never-accepted _event_ids are sent; the same id with other content is a conflict."""

from __future__ import annotations

import pytest

from airflow_provider_instasent.ingest import write_contacts
from airflow_provider_instasent.sync import CHANGELOG_TABLE, sync_events
from tests.conftest import emulator_state
from tests.support.ingest_helpers import ORDER, contacts, orders

from .test_sync_contacts import rows

pytestmark = pytest.mark.integration


def test_only_new_events_are_sent_and_an_unchanged_rerun_makes_zero_calls(client, writes, state, emu):
    write_contacts(client, contacts(50))  # events of unknown users would be rejects (the contact check)
    writes.reset()
    first = sync_events(client, orders(150), sync_id="orders", state=state, event_type=ORDER)
    assert (first.added, first.accepted, first.requests) == (150, 150, 2)
    assert emulator_state(emu)["events"] == 150
    writes.reset()
    again = sync_events(client, orders(150), sync_id="orders", state=state, event_type=ORDER)
    assert (again.added, again.unchanged, again.requests, writes.total) == (0, 150, 0, 0)
    more = sync_events(client, orders(160), sync_id="orders", state=state, event_type=ORDER)
    assert (more.added, more.unchanged, more.accepted, writes.pushes) == (10, 150, 10, 1)
    assert emulator_state(emu)["events"] == 160


def test_same_event_id_with_other_content_is_a_conflict_not_resent(client, writes, state):
    write_contacts(client, contacts(50))
    df = orders(20)
    df["_event_id"] = df["order_id"]
    sync_events(client, df, sync_id="orders", state=state, event_type=ORDER)
    writes.reset()
    df.loc[3, "amount"] = 999.0
    report = sync_events(client, df, sync_id="orders", state=state, event_type=ORDER)
    assert (report.conflicts, report.added, report.unchanged, report.requests, writes.total) == (1, 0, 19, 0, 0)
    log = rows(state, f"SELECT row_key, operation, outcome FROM {CHANGELOG_TABLE} WHERE run_id = ?",
               (report.run_id,))
    assert [tuple(r) for r in log] == [(df.loc[3, "order_id"], "conflict", "skipped")]


def test_dry_run_counts_events_in_the_automation_window(client, writes, state):
    import pandas as pd

    df = orders(5)
    df["_event_date"] = [pd.Timestamp.now(tz="UTC")] * 3 + [pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=2)] * 2
    dry = sync_events(client, df, sync_id="orders", state=state, event_type=ORDER, dry_run=True)
    assert (dry.added, dry.would_fire_automations, writes.total) == (5, 3, 0)
    assert rows(state, "SELECT COUNT(*) FROM instasent_sync_state")[0][0] == 0  # no state advanced
