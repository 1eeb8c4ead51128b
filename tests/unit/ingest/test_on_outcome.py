"""The engine's ``on_outcome`` hook: every decided row reported once, by source row, with its reason."""

from __future__ import annotations

import pandas as pd
import pytest

from airflow_provider_instasent.ingest import RequestFailedError, write_contacts
from tests.support.ingest_helpers import FakeClient, contacts


def collect():
    seen: dict[str, dict[int, str]] = {"accepted": {}, "rejected": {}, "failed": {}}

    def on_outcome(outcome, rows, reasons):
        assert len(rows) == len(reasons)
        for row, reason in zip(rows, reasons):
            assert all(row not in s for s in seen.values()), f"row {row} reported twice"
            seen[outcome][row] = reason
    return seen, on_outcome


def test_accepted_local_and_api_rejects_are_reported_by_source_row(specs):
    df = contacts(10)
    df.loc[3, "loyalty_points"] = float("inf")  # rejected by the loader
    client = FakeClient(reject=lambda item: {"plan": ["not allowed"]} if item["_user_id"] == "user-7" else None)
    seen, hook = collect()
    report = write_contacts(client, df, specs=specs, on_invalid="skip", on_outcome=hook, max_items=4)
    assert sorted(seen["accepted"]) == [0, 1, 2, 4, 5, 6, 8, 9]
    assert set(seen["rejected"]) == {3, 7}
    assert "loyalty_points" in seen["rejected"][3] and "not allowed" in seen["rejected"][7]
    assert seen["accepted"][0] == "" and (report.accepted, report.rejected) == (8, 2)


def test_a_failed_request_reports_failed_and_skipped_rows_get_no_call(specs):
    seen, hook = collect()
    with pytest.raises(RequestFailedError):
        write_contacts(FakeClient(fail_on_call=1), contacts(300), specs=specs, on_outcome=hook, max_in_flight=1)
    assert sorted(seen["failed"]) == list(range(100))  # the first request's rows
    assert len(seen["accepted"]) + 100 < 300  # the rows after the stop were skipped: no call
    assert all("outcome unknown" in r and "boom" in r for r in seen["failed"].values())


def test_without_the_hook_nothing_changes(specs):
    report = write_contacts(FakeClient(), pd.DataFrame({"_user_id": ["a"]}), specs=specs)
    assert report.accepted == 1
