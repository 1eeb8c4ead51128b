"""The asset-scheduled example DAGs (``dags_examples/instasent_asset_pipeline.py``) with real
Airflow (``dag.test()``), and deferral on a long rate-limit wait inside a real DAG run."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
import requests

from tests.conftest import ROOT, emulator_state
from tests.system.test_example_dags import _run, example_env, runs_dags  # noqa: F401 (fixture)

pytest.importorskip("airflow")
FILE = ROOT / "dags_examples" / "instasent_asset_pipeline.py"
DAG_IDS = ("instasent_warehouse_model", "instasent_sync_on_model", "instasent_audience_report")


@pytest.fixture
def asset_dags(example_env, monkeypatch):  # noqa: F811
    """The file parsed with its data directory in the test's tmp_path (read at parse time)."""
    from tests.support.dag_utils import dagbag_class, sync_dag_to_db

    monkeypatch.setenv("INSTASENT_EXAMPLES_DIR", str(example_env["data"]))
    bag = dagbag_class()(dag_folder=str(FILE))
    assert not bag.import_errors, bag.import_errors
    return bag, sync_dag_to_db


def test_the_asset_dags_declare_their_schedule_and_assets(asset_dags, example_env):  # noqa: F811
    bag, _ = asset_dags
    assert set(bag.dag_ids) == set(DAG_IDS)
    model, sync, report = (bag.dags[d] for d in DAG_IDS)
    assert [a.uri for a in model.get_task("build_crm_model").outlets] == ["x-warehouse://analytics/crm_model"]
    assert [a.uri for a in sync.get_task("sync_crm_model").outlets] == ["instasent://demo/datasource/crm/contacts"]
    export = sync.get_task("export_audience")
    assert [a.uri for a in export.inlets] == ["instasent://demo/audience"]
    parquet = f"file://{example_env['data']}/export/audience_latest.parquet"
    assert [a.uri for a in export.outlets] == [parquet]
    for dag in (model, sync, report):
        assert "instasent" in dag.tags and dag.catchup is False and dag.doc_md
        assert all(task.retries >= 1 for task in dag.tasks)


def _events(uri: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(select(AssetEvent.extra).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                               .where(AssetModel.uri == uri).order_by(AssetEvent.id)).all()
        return [dict(r[0] or {}) for r in rows]


def _queued(dag_id: str) -> bool:
    """The scheduler's queue of asset-triggered runs holds one for ``dag_id``."""
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return bool(session.scalar(select(func.count()).select_from(AssetDagRunQueue)
                                   .where(AssetDagRunQueue.target_dag_id == dag_id)))


def _run_dag(dag):
    """``dag.test()``, which must succeed (the example tests' ``_run`` on a bag of one)."""
    return _run(SimpleNamespace(dags={dag.dag_id: dag}), dag.dag_id, {})


@runs_dags
@pytest.mark.integration
@pytest.mark.airflow
@pytest.mark.usefixtures("airflow_db")
def test_the_model_triggers_the_sync_and_the_export_triggers_the_report(asset_dags, example_env, emu):  # noqa: F811
    bag, sync_dag_to_db = asset_dags
    model, sync, report = (bag.dags[d] for d in DAG_IDS)
    for dag in (model, sync, report):  # all serialized first: the producers queue the consumers' runs
        sync_dag_to_db(dag)

    _run_dag(model)
    assert _events("x-warehouse://analytics/crm_model")
    assert _queued("instasent_sync_on_model")  # the scheduler would start the sync now

    sync_run = _run_dag(sync)
    synced = emulator_state(emu)["contacts"]["crm"]
    assert 290 <= synced <= 300
    (pushed,) = _events("instasent://demo/datasource/crm/contacts")
    assert pushed["run_id"] == sync_run.run_id and pushed["sync_id"] == "crm_model"
    assert pushed["accepted"] == synced and pushed["rows"] == 300 and pushed["rejects"] == 300 - synced
    parquet = example_env["data"] / "export" / "audience_latest.parquet"
    (exported,) = _events(f"file://{parquet}")
    assert exported["rows"] == pq.read_metadata(parquet).num_rows == emulator_state(emu)["audience_contacts"]
    assert _queued("instasent_audience_report")

    report_run = _run_dag(report)
    (ti,) = report_run.get_task_instances()
    assert ti.xcom_pull(task_ids="report") == {"rows": exported["rows"], "export_run_id": sync_run.run_id}


@runs_dags
@pytest.mark.integration
@pytest.mark.airflow
@pytest.mark.usefixtures("airflow_db")
def test_a_deferred_ingest_resumes_in_a_dag_run(instasent_conn, emu, monkeypatch):
    """A spent rate-limit budget defers the task (the triggerer waits, not a worker slot); when the
    trigger fires the task runs again and finishes. The emulator's budget is lifted while the task
    is deferred, as an hourly quota resets."""
    import pendulum
    from airflow.models.taskinstance import TaskInstance
    from airflow.sdk import dag
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airflow_provider_instasent.operators.ingest import InstasentIngestOperator
    from tests.support.ingest_helpers import contacts

    @dag(dag_id="instasent_deferral_test", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))
    def deferral():
        InstasentIngestOperator(task_id="push", kind="contacts", python_callable=contacts, op_args=[150],
                                deferrable=True, defer_after=1)

    the_dag = deferral()
    requests.post(f"{emu}/_emulator/faults", json={"rate_limit": 12}, timeout=10).raise_for_status()
    seen: list[str] = []
    done = threading.Event()

    def lift_when_deferred() -> None:
        while not done.wait(0.2):
            with create_session() as session:
                state = session.scalar(select(TaskInstance.state).where(
                    TaskInstance.dag_id == "instasent_deferral_test", TaskInstance.task_id == "push"))
            if state == "deferred":
                seen.append(state)
                requests.post(f"{emu}/_emulator/faults", json={"rate_limit": None}, timeout=10)
                return

    watcher = threading.Thread(target=lift_when_deferred, daemon=True)
    watcher.start()
    try:
        run = _run_dag(the_dag)
    finally:
        done.set()
        watcher.join(10)
    assert seen == ["deferred"]
    (ti,) = run.get_task_instances()
    result = ti.xcom_pull(task_ids="push")
    assert result["accepted"] == 150 and emulator_state(emu)["contacts"]["dsapi"] == 150
    assert json.dumps(result)
