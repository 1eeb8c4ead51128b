"""The sharded backfill DAG: structure (pool, mapping, retries) and a ``dag.test()`` run on the emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import ADMIN_TOKEN, PROJECT, ROOT, emulator_state

DAG_FILE = ROOT / "dags_examples" / "instasent_sharded_backfill.py"
DAG_ID = "instasent_sharded_backfill"


def _dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(DAG_ID)


@pytest.mark.airflow
@pytest.mark.usefixtures("airflow_db")
def test_dag_structure() -> None:
    dag = _dag()
    assert set(dag.task_ids) == {"plan", "ingest_shard", "summarize"}
    ingest = dag.get_task("ingest_shard")
    assert ingest.pool == "instasent_api"
    assert ingest.pool_slots >= 1
    assert ingest.retries >= 1
    assert dag.get_task("plan").downstream_task_ids == {"ingest_shard"}
    assert ingest.downstream_task_ids == {"summarize"}
    assert {"path", "kind", "event_type", "rows_per_shard", "max_in_flight"} <= set(dag.params.keys())
    assert dag.params["max_in_flight"] <= ingest.pool_slots


def _write_sample(n_contacts: int, n_events: int, directory: Path) -> tuple[Path, Path, int]:
    """Contacts and their page views as Parquet; 1 page view in 256 has no url (required)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from airflow_provider_instasent import samples

    contacts = samples.shop_contacts(n_contacts, 10)
    views = samples.page_views(contacts.column("_user_id").to_pylist(), n_events)
    bad = pc.equal(pc.bit_wise_and(pa.array(range(n_events)), 0xFF), 7)  # rows 7, 263, ...
    views = views.set_column(views.schema.get_field_index("url"), "url",
                             pc.if_else(bad, pa.scalar(None, pa.string()), views.column("url")))
    (directory / "contacts").mkdir(parents=True)
    (directory / "events").mkdir(parents=True)
    pq.write_table(contacts, directory / "contacts" / "contacts.parquet", row_group_size=100)
    pq.write_table(views.slice(0, n_events // 2), directory / "events" / "part-0.parquet", row_group_size=500)
    pq.write_table(views.slice(n_events // 2), directory / "events" / "part-1.parquet", row_group_size=500)
    return directory / "contacts", directory / "events", int(pc.sum(bad).as_py())


def _summary(run) -> dict:
    ti = next(ti for ti in run.get_task_instances() if ti.task_id == "summarize")
    return ti.xcom_pull(task_ids="summarize")


@pytest.mark.airflow
@pytest.mark.integration
@pytest.mark.usefixtures("airflow_db")
def test_dag_run_ingests_every_event_once(instasent_conn: str, tmp_path: Path) -> None:
    from airflow.sdk import DagRunState

    contacts, events, n_bad = _write_sample(400, 6_000, tmp_path)
    dag = _dag()

    # contacts first (events of unknown users are not stored), sharded too
    run = dag.test(run_conf={"path": str(contacts), "kind": "contacts", "rows_per_shard": 150})
    assert run.state == DagRunState.SUCCESS
    summary = _summary(run)
    assert (summary["shards"], summary["rows"], summary["rejected"]) == (3, 400, 0)
    assert emulator_state(instasent_conn)["contacts"]["dsapi"] > 0

    # every key given: dag.test() on one DAG object can carry params over from the previous run
    conf = {"path": str(events), "kind": "events", "rows_per_shard": 1_500, "max_in_flight": 2}
    run = dag.test(run_conf=conf)
    assert run.state == DagRunState.SUCCESS
    tis = [ti for ti in run.get_task_instances() if ti.task_id == "ingest_shard"]
    assert len(tis) == 4
    summary = _summary(run)
    assert summary["rows"] == 6_000 and summary["shards"] == 4
    assert summary["rejected"] == n_bad and summary["accepted"] == 6_000 - n_bad
    # the shard reports carry their start, finish and worker: the run's wall time and rate exist
    assert summary["wall_seconds"] > 0 and summary["rows_per_second"] > 0
    assert summary["wall_seconds"] <= summary["run_seconds"]
    assert sum(w["shards"] for w in summary["by_worker"].values()) == 4
    assert sum(w["rows"] for w in summary["by_worker"].values()) == 6_000
    assert emulator_state(instasent_conn)["events"] == 6_000 - n_bad

    # a second run (another cut of the same files) sends everything again and stores nothing new
    run2 = dag.test(run_conf={**conf, "rows_per_shard": 2_500})
    assert run2.state == DagRunState.SUCCESS
    assert _summary(run2)["shards"] == 3
    assert emulator_state(instasent_conn)["events"] == 6_000 - n_bad


@pytest.mark.integration
def test_sql_key_range_shards_through_the_operator(instasent_conn: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The SQL recipe of docs/scaling.md: plan_sql_shards + key_range_query + InstasentIngestOperator(sql=...)."""
    import sqlite3

    from airflow_provider_instasent import InstasentClient
    from airflow_provider_instasent.operators.ingest import InstasentIngestOperator
    from airflow_provider_instasent.sharding import key_range_query, plan_sql_shards

    with InstasentClient(token=ADMIN_TOKEN, project=PROJECT, base_url=instasent_conn) as client:
        client.push_contacts([{"_user_id": f"u-{i}"} for i in range(50)])
    db = tmp_path / "warehouse.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE page_views (id INTEGER PRIMARY KEY, _event_id TEXT, _user_id TEXT, "
                "_event_date TEXT, url TEXT)")
    ids = [i * 3 for i in range(1, 701)]  # gaps: 3, 6, ..., 2100
    con.executemany("INSERT INTO page_views VALUES (?, ?, ?, ?, ?)",
                    [(i, f"pv-{i}", f"u-{i % 50}", "2024-05-01T10:00:00Z", f"https://shop.example/{i}") for i in ids])
    con.commit()
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(db)}))

    shards = plan_sql_shards(con, "page_views", "id", target_rows=200, balanced=True)
    assert len(shards) == 4
    total = 0
    for shard in shards:
        sql, params = key_range_query(shard, columns=["_event_id", "_user_id", "_event_date", "url"],
                                      paramstyle="qmark")
        op = InstasentIngestOperator(task_id=f"ingest_{shard['index']}", kind="events", event_type="page_view",
                                     sql=sql, sql_conn_id="warehouse", sql_parameters=params, on_invalid="skip")
        report = op.execute(context={})
        assert report["rejected"] == 0
        total += report["accepted"]
    assert total == 700
    assert emulator_state(instasent_conn)["events"] == 700
