"""Property: every input row ends up accepted, rejected or skipped, never lost or doubled."""

from __future__ import annotations

import pandas as pd
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_instasent.ingest import write_contacts, write_events
from tests.conftest import emulator_state
from tests.support.ingest_helpers import ORDER, FakeClient, contacts

pytestmark = pytest.mark.integration

USERS = [f"user-{i}" for i in range(8)]

row = st.fixed_dictionaries({
    "_user_id": st.one_of(st.sampled_from(USERS), st.none(), st.just(""), st.just("stranger")),
    "_event_id": st.one_of(st.text(alphabet="abc", min_size=1, max_size=3), st.none()),
    "order_id": st.one_of(st.text(alphabet="o", min_size=1, max_size=70), st.none()),
    "amount": st.one_of(st.floats(allow_nan=True, width=32), st.none(), st.just("12.5"), st.just("abc")),
    "currency": st.one_of(st.sampled_from(["EUR", "USD", "EURO", ""]), st.none()),
    "_event_date": st.one_of(st.none(), st.sampled_from(["2024-01-01T00:00:00Z", "2023-06-01T12:30:00+02:00",
                                                         "not a date", "2024-01-01 00:00:00"])),
})
frames = st.lists(row, min_size=1, max_size=60).map(pd.DataFrame)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(frames, st.integers(min_value=1, max_value=40))
def test_every_row_is_accounted_for_once(emu, client, df, batch_rows):
    requests.post(f"{emu}/_emulator/reset", timeout=10).raise_for_status()
    write_contacts(client, contacts(len(USERS)))
    report = write_events(client, df, event_type=ORDER, on_invalid="skip", batch_rows=batch_rows, max_in_flight=3)
    rejected_rows = set(report.rejects.source_row)
    assert report.rows == len(df)
    assert report.skipped == 0
    assert report.rejected == len(rejected_rows)
    assert report.accepted + report.rejected == report.rows
    assert report.sent == report.accepted + report.rejected_api
    assert rejected_rows <= set(range(len(df)))
    # what the emulator stored: one event per distinct id among accepted rows of known contacts
    accepted = df.drop(index=sorted(rejected_rows))
    known = accepted[accepted["_user_id"].isin(USERS)]
    stored_ids = set(known["_event_id"].dropna())
    derived = known["_event_id"].isna().sum()
    assert len(stored_ids) <= emulator_state(emu)["events"] <= len(stored_ids) + derived


@settings(max_examples=40, deadline=None)
@given(frames, st.integers(min_value=1, max_value=25), st.sampled_from(["skip", "fail"]),
       st.integers(min_value=0, max_value=6))
def test_accounting_holds_when_runs_stop(df, batch_rows, on_invalid, fail_on_call):
    from airflow_provider_instasent.ingest import IngestError, ProjectSpecs
    from tests.support.ingest_helpers import ATTRIBUTES, EVENT_TYPES

    specs = ProjectSpecs.from_specs(ATTRIBUTES, EVENT_TYPES)
    client = FakeClient(fail_on_call=fail_on_call or None)
    try:
        report = write_events(client, df, event_type=ORDER, on_invalid=on_invalid, batch_rows=batch_rows,
                              max_in_flight=2, specs=specs, max_items=7)
    except IngestError as exc:
        report = exc.report
    assert report.accepted + report.rejected + report.unknown + report.skipped == report.rows
    answered = [call for i, call in enumerate(client.calls, 1) if i != fail_on_call]
    assert report.accepted == sum(len(call) for call in answered)  # the fake accepts every item it answers
    assert report.sent == len(client.items)
