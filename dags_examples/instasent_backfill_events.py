"""Historical backfill of orders that must not fire automations.

Instasent fires automations only for events whose ``_event_date`` is within ±1 hour of
reception. A backfill of last year's orders is safe by construction, but a "backfill" whose
rows are recent (a replayed queue, rows without a date) would text customers about orders
they placed an hour ago. So this DAG:

1. dry-runs the file first (nothing is stored; the report counts the events that would fire
   automations, ``would_fire_automations``), and
2. sends it with ``automations="refuse"``: if any event falls inside the window, nothing is
   sent and the task fails with the count and the first offending rows.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Param, dag

from airflow_provider_instasent.operators.ingest import InstasentIngestOperator

# Default root of the example files; every path is also a DAG Param (the demo sets the variable).
DATA_DIR = os.environ.get("INSTASENT_EXAMPLES_DIR", "/tmp/instasent-examples")


@dag(
    dag_id="instasent_backfill_events",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["instasent", "ingest", "backfill"],
    params={
        "path": Param(f"{DATA_DIR}/backfill_orders.parquet", type="string"),
        "event_type": Param("ecommerce_order_create", type="string"),
        "rejects_path": Param(f"{DATA_DIR}/rejects/backfill.parquet", type="string"),
    },
)
def instasent_backfill_events() -> None:
    dry_run = InstasentIngestOperator(
        task_id="dry_run",
        kind="events",
        path="{{ params.path }}",
        event_type="{{ params.event_type }}",
        dry_run=True,
        automations="warn",
        on_invalid="skip",
    )
    backfill = InstasentIngestOperator(
        task_id="backfill",
        kind="events",
        path="{{ params.path }}",
        event_type="{{ params.event_type }}",
        automations="refuse",
        on_invalid="dead_letter",
        max_rejected_ratio=0.01,
        rejects_path="{{ params.rejects_path }}",
        retries=3,
    )
    dry_run >> backfill


instasent_backfill_events()
