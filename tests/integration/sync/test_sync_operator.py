"""InstasentSyncOperator via ``execute()``: SQL model → contacts with state next to the model."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest

from airflow_provider_instasent.sync import RUNS_TABLE, STATE_TABLE
from tests.conftest import emulator_state
from tests.support import FakeTI

pytestmark = [pytest.mark.integration, pytest.mark.airflow]
pytest.importorskip("airflow")  # the operator needs Airflow (the analyst's install has none)


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    db = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE customers (id TEXT, tier TEXT)")
        conn.executemany("INSERT INTO customers VALUES (?, ?)", [(f"c{i}", "free") for i in range(30)])
    return db


def test_sql_model_to_contacts_keeps_state_in_the_source_database(instasent_conn, warehouse):
    from airflow_provider_instasent.operators.sync import InstasentSyncOperator

    def op() -> InstasentSyncOperator:
        return InstasentSyncOperator(
            task_id="sync", kind="contacts", sync_id="customers", sql="SELECT id, tier FROM customers",
            sql_conn_id="warehouse", columns={"id": "_user_id", "tier": "plan"}, min_rows=10, max_removals=5)

    first = op().execute(context={})
    assert (first["added"], first["accepted"], first["status"]) == (30, 30, "ok")
    assert json.dumps(first) and "changes" not in first  # counts only
    with sqlite3.connect(warehouse) as conn:
        conn.execute("UPDATE customers SET tier = 'pro' WHERE id IN ('c1', 'c2')")
        conn.execute("DELETE FROM customers WHERE id = 'c29'")
    second = op().execute(context={})
    assert (second["changed"], second["removed"], second["unchanged"], second["requests"]) == (2, 1, 27, 1)
    with sqlite3.connect(warehouse) as conn:
        assert conn.execute(f"SELECT COUNT(*) FROM {STATE_TABLE}").fetchone()[0] == 30
        assert [r[0] for r in conn.execute(f"SELECT status FROM {RUNS_TABLE}")] == ["ok", "ok"]
    assert emulator_state(instasent_conn)["contacts"]["dsapi"] == 30


def test_a_guardrail_fails_the_task_without_retry_and_pushes_the_counts(instasent_conn, warehouse):
    from airflow_provider_instasent._airflow_compat import AirflowFailException
    from airflow_provider_instasent.operators.sync import InstasentSyncOperator

    InstasentSyncOperator(task_id="s", kind="contacts", sync_id="customers", sql="SELECT id AS _user_id FROM customers",
                          sql_conn_id="warehouse").execute({})
    with sqlite3.connect(warehouse) as conn:
        conn.execute("DELETE FROM customers")
    ti = FakeTI()
    op = InstasentSyncOperator(task_id="s", kind="contacts", sync_id="customers",
                               sql="SELECT id AS _user_id FROM customers", sql_conn_id="warehouse", min_rows=1)
    with pytest.raises(AirflowFailException, match="min_rows=1: the model returned 0 rows"):
        op.execute({"ti": ti})
    assert ti.xcom["sync_report"]["status"] == "refused"  # type: ignore[index]


def test_python_callable_with_a_duckdb_state_file_and_dry_run(instasent_conn, tmp_path):
    from airflow_provider_instasent.operators.sync import InstasentSyncOperator

    frame = pd.DataFrame({"_user_id": ["a", "b"], "plan": ["x", "y"]})
    state = str(tmp_path / "state.duckdb")
    dry = InstasentSyncOperator(task_id="s", kind="contacts", sync_id="s", python_callable=lambda: frame,
                                state_path=state, dry_run="true").execute({})
    assert (dry["added"], dry["requests"], dry["status"]) == (2, 0, "dry_run")
    real = InstasentSyncOperator(task_id="s", kind="contacts", sync_id="s", python_callable=lambda: frame,
                                 state_path=state).execute({})
    assert real["accepted"] == 2


def test_a_source_without_a_state_location_is_refused_at_parse_time():
    from airflow_provider_instasent.operators.sync import InstasentSyncOperator

    with pytest.raises(ValueError, match="state_conn_id"):
        InstasentSyncOperator(task_id="s", kind="contacts", sync_id="s", path="x.parquet")
