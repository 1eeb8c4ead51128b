"""Nightly export: the audience and the events into the warehouse incrementally, a segment, and Parquet.

``incremental=True``: the first run reads everything; each later run reads only the contacts
updated (events: dated) since the watermark stored with the table, minus ``lookback``, and
merges them in (contacts on ``audience_id``, events once by ``_event_id``). The watermark is a
row of ``instasent_export_watermarks`` in the warehouse, written in the transaction that
commits the table, so a failed or killed run leaves it where it was and the retry reads the
same changes again. An incremental export does not see deleted contacts: run it with
``incremental=False`` (a full ``replace``) now and then, e.g. weekly, to drop them.

The segment is a full ``replace`` every night (staging table swapped in one transaction):
a contact that left the segment must leave the table, which a merge of changes would not do.
The Parquet file is a dated full snapshot. The schema comes from the project's
``/specs/attributes``, so the columns stay stable; which of them carry values depends on the
token's privacy level.
"""

from __future__ import annotations

import os
from datetime import timedelta

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
        incremental=True,  # merge what changed since the last run's watermark
        lookback=timedelta(hours=2),  # read late updates again
        retries=2,
    )
    events = InstasentToSqlOperator(
        task_id="events_to_warehouse",
        source="events",
        sql_conn_id="instasent_warehouse",
        table="instasent_events",
        incremental=True,  # each event once, by _event_id
        lookback=timedelta(hours=2),
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
    audience >> events >> segment


instasent_nightly_export()
