"""Daily Parquet feed from the shop: contacts first, then orders and page views.

The shop drops one folder of Parquet files per day. Contacts go first, written with
``sync=True`` (each write applied before its response, not queued), because the API silently
skips events of a ``_user_id`` the datasource does not hold yet. The event tasks read the
contacts task's rejects (``contacts_from``): an order of a customer whose contact row was
rejected is a reject with that reason, and every other event's contact is checked before it
is sent, so no event is counted as accepted and then lost. Invalid rows never stop the feed:
they go to a rejects Parquet file per day (``on_invalid="dead_letter"``), and the task fails
only when more than 5% of a file is rejected. Events carry their own ``_event_id``, so a
retried task never duplicates an event.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Param, dag

from airflow_provider_instasent.operators.ingest import InstasentIngestOperator

COMMON = {
    "on_invalid": "dead_letter",
    "max_rejected_ratio": 0.05,
    "max_in_flight": 8,
    "retries": 2,
    "retry_delay": pendulum.duration(minutes=2),
}

# Default root of the example files; every path is also a DAG Param (the demo sets the variable).
DATA_DIR = os.environ.get("INSTASENT_EXAMPLES_DIR", "/tmp/instasent-examples")
#: The contacts task's rejects: the event tasks read them (``contacts_from``).
CONTACT_REJECTS = "{{ params.rejects_dir }}/shop_contacts-{{ ds }}.parquet"


@dag(
    dag_id="instasent_daily_events",
    doc_md=__doc__,
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["instasent", "ingest"],
    params={
        "contacts_path": Param(f"{DATA_DIR}/contacts_shop.parquet", type="string"),
        "orders_path": Param(f"{DATA_DIR}/orders.parquet", type="string"),
        "page_views_path": Param(f"{DATA_DIR}/page_views.parquet", type="string"),
        "rejects_dir": Param(f"{DATA_DIR}/rejects", type="string"),
    },
)
def instasent_daily_events() -> None:
    contacts = InstasentIngestOperator(
        task_id="ingest_shop_contacts",
        kind="contacts",
        path="{{ params.contacts_path }}",
        rejects_path=CONTACT_REJECTS,
        sync=True,  # events follow: apply each contact write before its response
        **COMMON,
    )
    orders = InstasentIngestOperator(
        task_id="ingest_orders",
        kind="events",
        event_type="ecommerce_order_create",
        path="{{ params.orders_path }}",
        rejects_path="{{ params.rejects_dir }}/orders-{{ ds }}.parquet",
        contacts_from=CONTACT_REJECTS,
        **COMMON,
    )
    page_views = InstasentIngestOperator(
        task_id="ingest_page_views",
        kind="events",
        event_type="page_view",
        path="{{ params.page_views_path }}",
        rejects_path="{{ params.rejects_dir }}/page_views-{{ ds }}.parquet",
        contacts_from=CONTACT_REJECTS,
        **COMMON,
    )
    contacts >> [orders, page_views]


instasent_daily_events()
