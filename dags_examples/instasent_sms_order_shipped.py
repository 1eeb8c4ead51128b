"""Order-shipped SMS from a warehouse query, each sent exactly once (docs/sms.md).

Every 15 minutes, the orders shipped in the last two days are read from the warehouse with
their customer's mobile number and time zone, and each gets one SMS: "Hi Ada, order 1234
shipped with UPS". The query can look back as far as it likes: the send ledger
(``instasent_sms_ledger``, kept in the warehouse next to the data) holds one row per order id,
so an order already notified is skipped, by this run, by a task retry, or after a crash.

Guards: at most 500 messages per run (``max_recipients``, checked before the first send; more
fails the task without retries: a broken query never becomes an SMS blast); phone numbers are
normalised to E.164 (local numbers read as Spanish), and landlines or malformed numbers are
rejected with their reason; quiet hours: a customer is only messaged between 09:00 and 21:00 in
their own time zone, and the task defers (on a date-time trigger, no worker held) until the
next window opens for the ones held. Each row's outcome is written to
``instasent_sms_outcomes``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag

from airflow_provider_instasent.operators.sms import InstasentSendBulkSmsOperator


@dag(
    dag_id="instasent_sms_order_shipped",
    doc_md=__doc__,
    schedule="*/15 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["instasent", "sms"],
    params={"max_recipients": Param(500, type="integer", minimum=0)},
)
def instasent_sms_order_shipped() -> None:
    InstasentSendBulkSmsOperator(
        task_id="order_shipped_sms",
        sql="""
            SELECT s.order_id, s.carrier, c.first_name, c.phone, c.timezone
            FROM shipments s JOIN customers c ON c.customer_id = s.customer_id
            WHERE s.shipped_at >= now() - INTERVAL 2 DAY
            ORDER BY s.shipped_at, s.order_id
        """,
        sql_conn_id="instasent_warehouse",  # the ledger lives here too (or ledger_conn_id=)
        text="Hi {first_name}, your order {order_id} has shipped with {carrier}.",
        key_column="order_id",  # one SMS per order, ever
        recipient_column="phone",
        default_region="ES",
        utm_term="order-shipped",
        send_window=("09:00", "21:00"),
        timezone_column="timezone",
        outside_window="defer",
        max_recipients="{{ params.max_recipients }}",
        retries=3,
    )


instasent_sms_order_shipped()
