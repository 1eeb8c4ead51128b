"""Data-aware scheduling with assets: warehouse model → sync → export → a downstream report.

Three DAGs, chained by assets instead of clocks (docs/airflow.md):

* ``instasent_warehouse_model`` rebuilds the ``crm_model`` table in the warehouse and
  produces the asset ``x-warehouse://analytics/crm_model``;
* ``instasent_sync_on_model`` is scheduled on that asset: it syncs the model into the ``crm``
  datasource (outlet ``instasent://<project>/datasource/crm/contacts``, declared by the
  operator), then exports the audience to Parquet (inlet ``instasent://<project>/audience``,
  outlet the file);
* ``instasent_audience_report`` is scheduled on the Parquet file's asset and reads the counts
  the export put on the asset event's ``extra`` (rows, total hits, run id).

The project is named in the DAG file (``INSTASENT_PROJECT``), so the operators know their
assets when the file is parsed, without reading a connection.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import Asset, dag, task

from airflow_provider_instasent.operators.export import InstasentToParquetOperator
from airflow_provider_instasent.operators.sync import InstasentSyncOperator

PROJECT = os.environ.get("INSTASENT_PROJECT", "demo")
DATA_DIR = os.environ.get("INSTASENT_EXAMPLES_DIR", "/tmp/instasent-examples")
AUDIENCE_FILE = f"{DATA_DIR}/export/audience_latest.parquet"

CRM_MODEL = Asset("x-warehouse://analytics/crm_model")
AUDIENCE_PARQUET = Asset(f"file://{AUDIENCE_FILE}")
START = pendulum.datetime(2026, 1, 1, tz="UTC")


@dag(dag_id="instasent_warehouse_model", doc_md=__doc__, schedule="0 4 * * *", start_date=START, catchup=False,
     max_active_runs=1, tags=["instasent", "assets"])
def instasent_warehouse_model() -> None:
    SQLExecuteQueryOperator(
        task_id="build_crm_model",
        conn_id="instasent_warehouse",
        sql="CREATE OR REPLACE TABLE crm_model AS "
            "SELECT customer_id AS _user_id, first_name, last_name, email, plan, loyalty_points FROM crm_contacts",
        outlets=[CRM_MODEL],
        retries=2,
    )


@dag(dag_id="instasent_sync_on_model", doc_md=__doc__, schedule=[CRM_MODEL], start_date=START, catchup=False,
     max_active_runs=1, tags=["instasent", "assets", "sync"])
def instasent_sync_on_model() -> None:
    sync = InstasentSyncOperator(
        task_id="sync_crm_model",
        kind="contacts",
        sync_id="crm_model",
        sql="SELECT * FROM crm_model",
        sql_conn_id="instasent_warehouse",
        project=PROJECT,
        datasource="crm",  # with the project: the default outlet instasent://<project>/datasource/crm/contacts
        columns={"first_name": "_first_name", "last_name": "_last_name", "email": "_email"},
        ingest_options={"on_invalid": "skip"},
        deferrable=True,  # an hourly quota spent: wait in the triggerer, not in a worker slot
        retries=2,
    )
    export = InstasentToParquetOperator(
        task_id="export_audience",
        source="audience",
        project=PROJECT,  # the default inlet instasent://<project>/audience
        path=AUDIENCE_FILE,  # the default outlet: this file's asset
        deferrable=True,
        retries=2,
    )
    sync >> export


@dag(dag_id="instasent_audience_report", doc_md=__doc__, schedule=[AUDIENCE_PARQUET], start_date=START,
     catchup=False, tags=["instasent", "assets"])
def instasent_audience_report() -> None:
    @task(inlets=[AUDIENCE_PARQUET], retries=1)
    def report(*, inlet_events=None) -> dict:
        import pyarrow.parquet as pq

        event = inlet_events[AUDIENCE_PARQUET][-1]  # the export that triggered this run (or the latest)
        rows = pq.read_metadata(AUDIENCE_FILE).num_rows
        if rows != event.extra["rows"]:
            raise ValueError(f"{AUDIENCE_FILE} has {rows} rows; the export reported {event.extra['rows']}")
        print(f"audience export of run {event.extra['run_id']}: {rows} contacts")
        return {"rows": rows, "export_run_id": event.extra["run_id"]}

    report()


instasent_warehouse_model()
instasent_sync_on_model()
instasent_audience_report()
