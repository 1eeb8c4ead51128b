"""Direct SMS from a pipeline: tell a customer their order has shipped.

Triggered with ``{"user_id": "...", "order_id": "..."}``. The send is never repeated: the
client does not retry a send after an ambiguous failure, and a retried task first checks the
contact's direct SMS for the same text (``skip_if_sent``).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag

from airflow_provider_instasent.operators.sms import InstasentSendSmsOperator


@dag(
    dag_id="instasent_sms_notification",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["instasent", "sms"],
    params={
        "user_id": Param("crm-1", type="string"),
        "order_id": Param("ORD-1", type="string"),
    },
)
def instasent_sms_notification() -> None:
    InstasentSendSmsOperator(
        task_id="order_shipped_sms",
        user_id="{{ params.user_id }}",
        text="Good news: order {{ params.order_id }} has shipped!",
        utm_term="order-shipped",
        retries=3,
    )


instasent_sms_notification()
