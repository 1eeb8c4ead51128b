"""Reverse ETL: a warehouse table → Instasent contacts of the CRM datasource.

The query runs on any common-sql connection (here ``instasent_warehouse``, a DuckDB file in
the demo; PostgreSQL, Snowflake, BigQuery... work the same) and is streamed with a
server-side cursor, so the table never has to fit in memory. Columns are attribute uids;
``columns=`` renames the ones that are not. Contacts are upserts by ``_user_id``: rerunning
the DAG is safe. A missing value is *omitted* (``nulls="omit"``): Instasent keeps what it has.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Param, dag

from airflow_provider_instasent.operators.ingest import InstasentIngestOperator

# Default root of the example files; every path is also a DAG Param (the demo sets the variable).
DATA_DIR = os.environ.get("INSTASENT_EXAMPLES_DIR", "/tmp/instasent-examples")


@dag(
    dag_id="instasent_reverse_etl_contacts",
    doc_md=__doc__,
    schedule="0 5 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["instasent", "ingest", "reverse-etl"],
    params={
        "table": Param("crm_contacts", type="string", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"),
        "rejects_path": Param(f"{DATA_DIR}/rejects/crm_contacts.parquet", type="string"),
    },
)
def instasent_reverse_etl_contacts() -> None:
    InstasentIngestOperator(
        task_id="crm_contacts_to_instasent",
        kind="contacts",
        sql="""
            SELECT customer_id AS _user_id, first_name, last_name, email, phone,
                   plan, loyalty_points, birthday
            FROM {{ params.table }}
        """,
        sql_conn_id="instasent_warehouse",
        columns={"first_name": "_first_name", "last_name": "_last_name", "email": "_email",
                 "phone": "_phone_mobile"},
        datasource="crm",
        nulls="omit",
        on_invalid="dead_letter",
        max_rejected_ratio=0.05,
        rejects_path="{{ params.rejects_path }}",
        retries=2,
    )


instasent_reverse_etl_contacts()
