"""sync_contacts against the emulator over HTTP, with state in a real DuckDB file and in PostgreSQL."""

from __future__ import annotations

import pandas as pd
import pytest
import requests

from airflow_provider_instasent.ingest import RequestFailedError
from airflow_provider_instasent.io.sql import database
from airflow_provider_instasent.sync import (
    CHANGELOG_TABLE,
    RUNS_TABLE,
    STATE_TABLE,
    SyncGuardrailError,
    sync_contacts,
)
from airflow_provider_instasent.sync.store import open_state
from tests.conftest import emulator_state

pytestmark = pytest.mark.integration


def model(n: int, *, plan: dict[int, str] | None = None, start: int = 0) -> pd.DataFrame:
    plan = plan or {}
    return pd.DataFrame({
        "_user_id": [f"u{i}" for i in range(start, start + n)],
        "plan": [plan.get(i, "free") for i in range(start, start + n)],
        "loyalty_points": [float(i) for i in range(start, start + n)],
    })


def rows(state, sql: str, params=()):
    db, own = (database(state), None) if not isinstance(state, str) else open_state(state)
    try:
        if db.dialect.name == "postgres":
            sql = sql.replace("?", "%s")
        with db.connection() as conn:
            cur = conn.cursor()
            cur.execute(sql, list(params))
            out = cur.fetchall()
            conn.commit()
            return out
    finally:
        if own is not None:
            own.close()


def contact(client, user_id: str) -> dict:
    c = client.get_contact(user_id)
    return c.get("contactData", c)


def test_first_run_sends_all_and_unchanged_rerun_makes_zero_write_calls(client, writes, state):
    first = sync_contacts(client, model(250), sync_id="crm", state=state)
    assert (first.added, first.changed, first.unchanged, first.removed) == (250, 0, 0, 0)
    assert (first.accepted, first.rejected, first.failed) == (250, 0, 0)
    assert first.requests == writes.total == 3
    writes.reset()
    again = sync_contacts(client, model(250), sync_id="crm", state=state)
    assert (again.added, again.changed, again.unchanged, again.removed) == (0, 0, 250, 0)
    assert again.requests == 0 and writes.total == 0
    assert again.ingest is None and again.status == "ok"


def test_changed_added_removed_counts_are_exact_and_only_they_are_sent(client, writes, state, emu):
    sync_contacts(client, model(100), sync_id="crm", state=state)
    writes.reset()
    # 3 changed (u1, u2, u3), u90..u99 removed, u100..u104 added
    df = pd.concat([model(90, plan={1: "pro", 2: "pro", 3: "gold"}), model(5, start=100)], ignore_index=True)
    report = sync_contacts(client, df, sync_id="crm", state=state)
    assert (report.added, report.changed, report.removed, report.unchanged) == (5, 3, 10, 87)
    assert report.to_send == 8 and report.accepted == 8 and writes.pushes == 1 and writes.deletes == 0
    assert contact(client, "u3")["plan"] == "gold"
    assert emulator_state(emu)["contacts"]["dsapi"] == 105  # on_removed="ignore" deletes nothing
    log = rows(state, f"SELECT operation, outcome, COUNT(*) FROM {CHANGELOG_TABLE} WHERE run_id = ? "
                      f"GROUP BY operation, outcome ORDER BY operation", (report.run_id,))
    assert [tuple(r) for r in log] == [("added", "accepted", 5), ("changed", "accepted", 3),
                                       ("removed", "ignored", 10)]
    # removed once: the next run does not count them again
    third = sync_contacts(client, df, sync_id="crm", state=state)
    assert (third.removed, third.unchanged, third.requests) == (0, 95, 0)


def test_on_removed_delete_deletes_the_contacts_that_left_the_model(client, writes, state, emu):
    sync_contacts(client, model(20), sync_id="crm", state=state)
    writes.reset()
    report = sync_contacts(client, model(15), sync_id="crm", state=state, on_removed="delete")
    assert (report.removed, report.deleted, report.requests) == (5, 5, 5)
    assert writes.deletes == 5 and writes.pushes == 0
    assert emulator_state(emu)["contacts"]["dsapi"] == 15
    # back in the model: sent again (it was deleted)
    back = sync_contacts(client, model(16), sync_id="crm", state=state, on_removed="delete")
    assert (back.added, back.accepted, back.removed) == (1, 1, 0)


def test_rejected_rows_do_not_advance_state_and_are_resent_only_when_changed(client, writes, state):
    df = model(10)
    df["colour"] = [None] * 8 + ["red", "blue"]  # the emulator rejects the unknown attribute
    first = sync_contacts(client, df, sync_id="crm", state=state, unknown_columns="send", on_invalid="skip")
    assert (first.accepted, first.rejected) == (8, 2)
    state_rows = rows(state, f"SELECT row_key, accepted_hash, last_outcome, last_reason FROM {STATE_TABLE} "
                             f"WHERE last_outcome = 'rejected' ORDER BY row_key")
    assert [r[0] for r in state_rows] == ["u8", "u9"]
    assert all(r[1] is None and "colour" in r[3] for r in state_rows)
    writes.reset()
    same = sync_contacts(client, df, sync_id="crm", state=state, unknown_columns="send", on_invalid="skip")
    assert (same.held, same.to_send, same.requests, writes.total) == (2, 0, 0, 0)
    # u9 fixed: sent again; u8 unchanged: still held
    df.loc[9, "colour"] = None
    fixed = sync_contacts(client, df, sync_id="crm", state=state, unknown_columns="send", on_invalid="skip")
    assert (fixed.to_send, fixed.accepted, fixed.held) == (1, 1, 1)
    retried = sync_contacts(client, df, sync_id="crm", state=state, unknown_columns="send", on_invalid="skip",
                            retry_rejected=True)
    assert (retried.to_send, retried.rejected) == (1, 1)


def test_transient_failures_are_resent_on_the_next_run(client, writes, state, emu):
    from airflow_provider_instasent.ingest import ProjectSpecs

    specs = ProjectSpecs.load(client, kind="contacts")  # loaded before the faults start
    sync_contacts(client, model(10), sync_id="crm", state=state)
    requests.post(f"{emu}/_emulator/faults", json={"fault_rate": 1.0, "fault_kinds": ["503"]},
                  timeout=10).raise_for_status()
    changed = model(10, plan=dict.fromkeys(range(10), "pro"))
    with pytest.raises(RequestFailedError) as info:
        sync_contacts(client, changed, sync_id="crm", state=state, specs=specs)
    failed = info.value.sync_report  # type: ignore[attr-defined]
    assert (failed.changed, failed.accepted, failed.failed) == (10, 0, 10)
    assert rows(state, f"SELECT COUNT(*) FROM {STATE_TABLE} WHERE last_outcome = 'failed' AND attempts = 1")[0][0] == 10
    assert rows(state, f"SELECT status FROM {RUNS_TABLE} WHERE run_id = ?", (failed.run_id,))[0][0] == "failed"
    requests.post(f"{emu}/_emulator/faults", json={"fault_rate": 0.0}, timeout=10).raise_for_status()
    retry = sync_contacts(client, changed, sync_id="crm", state=state)
    assert (retry.changed, retry.accepted, retry.failed) == (10, 10, 0)
    assert contact(client, "u4")["plan"] == "pro"


@pytest.mark.parametrize(("limits", "limit", "measured"), [
    ({"min_rows": 50}, "min_rows", 0),
    ({"max_removals": 5}, "max_removals", 10),
    ({"max_removals": 0.05}, "max_removals", 0.5),
    ({"max_change_ratio": 0.1}, "max_change_ratio", 0.5),
])
def test_guardrails_refuse_before_anything_is_sent(client, writes, state, limits, limit, measured):
    sync_contacts(client, model(20), sync_id="crm", state=state)
    writes.reset()
    data = model(0) if limit == "min_rows" else model(10)
    with pytest.raises(SyncGuardrailError) as info:
        sync_contacts(client, data, sync_id="crm", state=state, on_removed="delete", **limits)
    assert info.value.limit == limit and info.value.measured == pytest.approx(measured)
    assert limit in str(info.value) and "Nothing was sent" in str(info.value)
    assert writes.total == 0
    run = rows(state, f"SELECT status, guardrail FROM {RUNS_TABLE} WHERE run_id = ?", (info.value.report.run_id,))
    assert run[0][0] == "refused" and limit in run[0][1]
    # nothing advanced: the same state diffs the same way
    assert sync_contacts(client, model(20), sync_id="crm", state=state).unchanged == 20


def test_dry_run_reports_field_level_changes_and_changes_nothing(client, writes, state):
    sync_contacts(client, model(10), sync_id="crm", state=state)
    writes.reset()
    df = pd.concat([model(8, plan={2: "pro"}), model(1, start=50)], ignore_index=True)
    dry = sync_contacts(client, df, sync_id="crm", state=state, dry_run=True, max_removals=1)
    assert (dry.added, dry.changed, dry.removed, dry.status) == (1, 1, 2, "dry_run")
    assert dry.guardrail.startswith("would refuse: max_removals=1")
    assert writes.total == 0 and dry.requests == 0
    changes = {(c["key"], c["field"]): (c["old"], c["new"]) for c in dry.changes}
    assert changes[("u2", "plan")] == ("free", "pro")
    assert changes[("u50", "plan")] == (None, "free")
    assert ("u9", None) in changes  # removed
    assert "changes" not in dry.to_dict()  # XCom: counts only
    real = sync_contacts(client, df, sync_id="crm", state=state)
    assert (real.added, real.changed, real.removed) == (1, 1, 2)


def test_state_in_a_sqlite_connection(client, writes, tmp_path):
    import sqlite3

    conn = sqlite3.connect(tmp_path / "state.sqlite")
    assert sync_contacts(client, model(5), sync_id="s", state=conn).accepted == 5
    assert sync_contacts(client, model(5, plan={0: "pro"}), sync_id="s", state=conn).changed == 1
    assert writes.pushes == 2


def test_contacts_entering_and_leaving_the_model_become_events(client, writes, emu, state):
    lifecycle = {"on_added_event": "page_view", "on_removed_event": "page_view",
                 "event_parameters": {"url": "https://example.com/audience/vip"}}
    first = sync_contacts(client, model(5), sync_id="vip", state=state, **lifecycle)
    assert (first.added, first.events_accepted) == (5, 5)
    assert emulator_state(emu)["events"] == 5
    again = sync_contacts(client, model(5), sync_id="vip", state=state, **lifecycle)
    assert (again.events_accepted, again.requests) == (0, 0)
    dry = sync_contacts(client, model(5, start=1), sync_id="vip", state=state, dry_run=True, **lifecycle)
    assert dry.would_fire_automations == 2  # u5 enters, u0 leaves: both dated now
    moved = sync_contacts(client, model(5, start=1), sync_id="vip", state=state, on_removed="delete", **lifecycle)
    assert (moved.added, moved.removed, moved.events_accepted, moved.deleted) == (1, 1, 2, 1)
    # 5 + u5 entered + u0 left, minus u0's two events, deleted with the contact
    assert emulator_state(emu)["events"] == 5
    run = moved.run_id
    from airflow_provider_instasent.sync.engine import SyncRun

    probe = SyncRun(client, "contacts", None, sync_id="vip", state=state, key=None, on_removed="ignore",
                    max_removals=None, max_change_ratio=None, min_rows=None, dry_run=False, retry_rejected=False,
                    max_attempts=None, retention_days=None, sample_size=1, flush_rows=1, options={"run_id": run})
    assert probe.lifecycle_event_id("page_view", "u5") == probe.lifecycle_event_id("page_view", "u5")
    assert probe.lifecycle_event_id("page_view", "u5").startswith("s1-")


def test_a_custom_key_diffs_by_that_column(client, writes, state):
    df = model(6)
    df["_email"] = [f"u{i}@example.com" for i in range(6)]
    first = sync_contacts(client, df, sync_id="by_email", state=state, key="_email")
    assert (first.added, first.accepted) == (6, 6)
    keys = [r[0] for r in rows(state, f"SELECT row_key FROM {STATE_TABLE} WHERE sync_id = ? ORDER BY row_key",
                               ("by_email",))]
    assert keys == [f"u{i}@example.com" for i in range(6)]
    writes.reset()
    df.loc[2, "plan"] = "pro"
    again = sync_contacts(client, df, sync_id="by_email", state=state, key="_email")
    assert (again.changed, again.unchanged, writes.pushes) == (1, 5, 1)


def test_a_key_twice_in_the_model_counts_once_its_last_row_wins(client, writes, state):
    """One state row per key on every database (DuckDB's state table has no primary key: the engine keeps it)."""
    df = pd.concat([model(5), model(2, plan={0: "gold", 1: "gold"})], ignore_index=True)  # u0, u1 twice
    first = sync_contacts(client, df, sync_id="crm", state=state)
    assert (first.rows, first.added, first.accepted) == (7, 5, 5)
    assert contact(client, "u0")["plan"] == "gold"
    for _ in range(2):  # re-runs (and a changed duplicate) never add a second state row for a key
        report = sync_contacts(client, pd.concat([df, model(1, plan={0: "pro"})], ignore_index=True),
                               sync_id="crm", state=state)
    assert (report.changed, report.unchanged) == (0, 5)
    dupes = rows(state, f"SELECT row_key, COUNT(*) FROM {STATE_TABLE} GROUP BY sync_id, row_key HAVING COUNT(*) > 1")
    assert dupes == [] and rows(state, f"SELECT COUNT(*) FROM {STATE_TABLE}")[0][0] == 5


def test_a_row_failing_max_attempts_runs_in_a_row_is_poisoned(client, writes, state, emu):
    from airflow_provider_instasent.ingest import ProjectSpecs

    specs = ProjectSpecs.load(client, kind="contacts")
    requests.post(f"{emu}/_emulator/faults", json={"fault_rate": 1.0, "fault_kinds": ["503"]},
                  timeout=10).raise_for_status()
    try:
        for attempt in (1, 2):
            with pytest.raises(RequestFailedError) as info:
                sync_contacts(client, model(4), sync_id="crm", state=state, specs=specs, max_attempts=2)
            assert (info.value.sync_report.failed, info.value.sync_report.poisoned) == (4, 0)  # type: ignore[attr-defined]
            assert rows(state, f"SELECT MIN(attempts), MAX(attempts) FROM {STATE_TABLE}")[0] in ((attempt, attempt),
                                                                                             [attempt, attempt])
        writes.reset()
        held = sync_contacts(client, model(4), sync_id="crm", state=state, specs=specs, max_attempts=2)
        assert (held.poisoned, held.to_send, held.requests, writes.total) == (4, 0, 0, 0)
        assert "4 poisoned" in held.summary()
    finally:
        requests.post(f"{emu}/_emulator/faults", json={"fault_rate": 0.0}, timeout=10).raise_for_status()
    # a poisoned row that changes is sent again; without max_attempts it is retried as before
    fixed = sync_contacts(client, model(4, plan={0: "pro"}), sync_id="crm", state=state, max_attempts=2)
    assert (fixed.to_send, fixed.accepted, fixed.poisoned) == (1, 1, 3)
    retried = sync_contacts(client, model(4, plan={0: "pro"}), sync_id="crm", state=state)
    assert (retried.added, retried.accepted, retried.poisoned) == (3, 3, 0)


def test_retention_deletes_only_this_syncs_old_runs_and_changelog(client, state):
    sync_contacts(client, model(3), sync_id="crm", state=state)
    from airflow_provider_instasent.sync.store import Store

    old = "2020-01-01T00:00:00.000Z"
    with Store.open(state, "crm", "seed") as store:
        for sync_id in ("crm", "other"):
            store.tx([
                (f"INSERT INTO {RUNS_TABLE} (run_id, sync_id, kind, started_at, status, dry_run) "
                 f"VALUES (?, ?, 'contacts', ?, 'ok', 0)", (f"old-{sync_id}", sync_id, old)),
                (f"INSERT INTO {CHANGELOG_TABLE} (run_id, sync_id, row_key, operation, outcome, logged_at) "
                 f"VALUES (?, ?, 'u0', 'added', 'accepted', ?)", (f"old-{sync_id}", sync_id, old)),
            ])
    report = sync_contacts(client, model(4), sync_id="crm", state=state, retention_days=30)
    runs = {r[0] for r in rows(state, f"SELECT run_id FROM {RUNS_TABLE}")}
    assert "old-crm" not in runs and "old-other" in runs and report.run_id in runs and len(runs) == 3
    log = {(r[0], r[1]) for r in rows(state, f"SELECT run_id, row_key FROM {CHANGELOG_TABLE}")}
    assert ("old-crm", "u0") not in log and ("old-other", "u0") in log and (report.run_id, "u3") in log
