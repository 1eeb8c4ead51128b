"""The example DAG ``instasent_sync_contacts`` with real Airflow (``dag.test()``) on a DuckDB warehouse."""

from __future__ import annotations

import duckdb
import pytest

from tests.conftest import emulator_state
from tests.system.test_example_dags import _run, dagbag, example_env, runs_dags  # noqa: F401 (fixtures)

DAG_ID = "instasent_sync_contacts"


def test_the_example_follows_the_house_rules(dagbag):  # noqa: F811
    assert not dagbag.import_errors, dagbag.import_errors
    dag = dagbag.dags[DAG_ID]
    assert "instasent" in dag.tags and dag.catchup is False and dag.doc_md
    assert all(task.retries >= 1 for task in dag.tasks)


@runs_dags
@pytest.mark.integration
@pytest.mark.airflow
@pytest.mark.usefixtures("airflow_db")
def test_the_example_syncs_only_changes_and_refuses_a_broken_model(dagbag, example_env, emu):  # noqa: F811
    from airflow.utils.state import DagRunState

    from tests.support.dag_utils import sync_dag_to_db

    warehouse = str(example_env["warehouse"])
    _run(dagbag, DAG_ID, {"table": "crm_contacts"})
    synced = emulator_state(emu)["contacts"]["crm"]
    assert 290 <= synced <= 300
    accepted = ("SELECT row_key FROM instasent_sync_state WHERE last_outcome = 'accepted' ORDER BY row_key")
    with duckdb.connect(warehouse) as con:
        keys = [r[0] for r in con.execute(accepted).fetchall()]
        con.execute("UPDATE crm_contacts SET plan = 'gold' WHERE customer_id IN (?, ?, ?, ?)", keys[:4])
        con.execute("DELETE FROM crm_contacts WHERE customer_id IN (?, ?, ?)", keys[-3:])
    _run(dagbag, DAG_ID, {"table": "crm_contacts"})
    with duckdb.connect(warehouse, read_only=True) as con:
        runs = con.execute("SELECT status, added, changed, removed, held, requests FROM instasent_sync_runs "
                           "ORDER BY started_at").fetchall()
    invalid = 300 - synced  # rejected by the loader in run 1, unchanged since: held, not sent again
    assert runs[0][0] == "ok" and runs[1] == ("ok", invalid, 4, 3, invalid, 1 + 3)  # one push, three deletes
    assert emulator_state(emu)["contacts"]["crm"] == synced - 3
    # a broken model (most rows gone): refused, nothing sent
    with duckdb.connect(warehouse) as con:
        con.execute("DELETE FROM crm_contacts WHERE customer_id NOT IN "
                    "(SELECT customer_id FROM crm_contacts ORDER BY customer_id LIMIT 150)")
    before = emulator_state(emu)["contacts"]["crm"]
    dag = dagbag.dags[DAG_ID]
    sync_dag_to_db(dag)
    run = dag.test(run_conf={"table": "crm_contacts"})
    assert run.state == DagRunState.FAILED
    assert emulator_state(emu)["contacts"]["crm"] == before
    with duckdb.connect(warehouse, read_only=True) as con:
        status, guardrail = con.execute("SELECT status, guardrail FROM instasent_sync_runs "
                                        "ORDER BY started_at DESC LIMIT 1").fetchone()
    assert status == "refused" and "max_removals" in guardrail
