"""Nightly export: the unified audience and a segment into the warehouse, and to Parquet.

``write_disposition="replace"`` loads into a staging table and swaps it in one transaction,
so analysts querying ``instasent_audience`` during the load see last night's table or
tonight's, never half of one. The schema comes from the project's ``/specs/attributes``, so
the columns stay stable; which of them carry values depends on the token's privacy level.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Param, dag

from airflow_provider_instasent.operators.export import InstasentToParquetOperator, InstasentToSqlOperator

# Default root of the example files; every path is also a DAG Param (the demo sets the variable).
DATA_DIR = os.environ.get("INSTASENT_EXAMPLES_DIR", "/tmp/instasent-examples")


@dag(
    dag_id="instasent_nightly_export",
    doc_md=__doc__,
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["instasent", "export"],
    params={
        "segment": Param("pro_plan", type="string"),
        "parquet_dir": Param(f"{DATA_DIR}/export", type="string"),
    },
)
def instasent_nightly_export() -> None:
    audience = InstasentToSqlOperator(
        task_id="audience_to_warehouse",
        source="audience",
        sql_conn_id="instasent_warehouse",
        table="instasent_audience",
        write_disposition="replace",
        retries=2,
    )
    segment = InstasentToSqlOperator(
        task_id="segment_to_warehouse",
        source="segment",
        segment="{{ params.segment }}",
        sql_conn_id="instasent_warehouse",
        table="instasent_segment_{{ params.segment }}",
        write_disposition="replace",
        retries=2,
    )
    InstasentToParquetOperator(
        task_id="audience_to_parquet",
        source="audience",
        path="{{ params.parquet_dir }}/audience-{{ ds }}.parquet",
        retries=2,
    )
    # DuckDB allows one writer per file: load the warehouse tables one after the other.
    audience >> segment


instasent_nightly_export()
