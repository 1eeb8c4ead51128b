"""Stateful reverse ETL: a warehouse model → CRM contacts, sending only what changed.

Like ``instasent_reverse_etl_contacts``, but with a sync: each run diffs the model against
what Instasent last *accepted* (state tables ``instasent_sync_*`` kept in the warehouse, next
to the model), sends only the added and changed contacts, deletes the ones that left the
model, and records every row's outcome in ``instasent_sync_changelog``. An unchanged model
makes no API call at all.

Guardrails stop a broken model before it touches the audience: fewer than 100 rows, more than
5% of the synced contacts removed, or more than half of them changing fails the task (without
retries) and sends nothing. Run with ``dry_run=true`` to see what a run would send, field by
field, in the task log. See docs/sync.md.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag

from airflow_provider_instasent.operators.sync import InstasentSyncOperator


@dag(
    dag_id="instasent_sync_contacts",
    doc_md=__doc__,
    schedule="0 5 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["instasent", "sync", "reverse-etl"],
    params={
        "table": Param("crm_contacts", type="string", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"),
        "dry_run": Param(False, type="boolean"),
    },
)
def instasent_sync_contacts() -> None:
    InstasentSyncOperator(
        task_id="sync_crm_contacts",
        kind="contacts",
        sync_id="crm_contacts",
        sql="""
            SELECT customer_id AS _user_id, first_name, last_name, email, phone,
                   plan, loyalty_points, birthday
            FROM {{ params.table }}
        """,
        sql_conn_id="instasent_warehouse",  # the state tables live here too (or state_conn_id=)
        columns={"first_name": "_first_name", "last_name": "_last_name", "email": "_email",
                 "phone": "_phone_mobile"},
        datasource="crm",
        on_removed="delete",
        min_rows=100,
        max_removals=0.05,
        max_change_ratio=0.5,
        retention_days=90,
        dry_run="{{ params.dry_run }}",
        ingest_options={"on_invalid": "skip"},  # a few bad rows are recorded, not fatal
        retries=2,
    )


instasent_sync_contacts()
