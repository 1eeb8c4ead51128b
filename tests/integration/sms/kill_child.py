"""The sender of the kill-at-every-step test: sends three order SMS and SIGKILLs itself at ``step``
during the second message (``python -m tests.integration.sms.kill_child URL TOKEN PROJECT STATE STEP``;
``none``: no kill). It imports neither pytest nor the test suite, so it starts fast.

The steps, in the order a message goes through them: ``before_pending`` (nothing written),
``before_request`` (``pending`` committed, no byte sent), ``after_request`` (the request was
written and the API has answered, the answer not yet read), ``after_answer`` (the client returned
the SMS, the ledger not written), ``before_ledger_write`` (inside the ledger write, nothing
committed), ``after_ledger_write`` (``sent`` committed, the outcome not yet reported).
"""

from __future__ import annotations

import http.client
import os
import signal
import sys

import pyarrow as pa

from airflow_provider_instasent import InstasentClient
from airflow_provider_instasent.sms import send_sms
from airflow_provider_instasent.sms.ledger import Ledger

STEPS = ("before_pending", "before_request", "after_request", "after_answer", "before_ledger_write",
         "after_ledger_write")
VICTIM = 2  # the second message is killed


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(url: str, token: str, project: str, state: str, step: str) -> None:
    client = InstasentClient(token=token, project=project, base_url=url, backoff_base=0.01)
    sends = {"n": 0}
    send = client.send_direct_sms

    def counted_send(*args, **kwargs):
        sends["n"] += 1
        if step == "before_request" and sends["n"] == VICTIM:
            die()
        sms = send(*args, **kwargs)
        if step == "after_answer" and sends["n"] == VICTIM:
            die()
        return sms

    client.send_direct_sms = counted_send  # type: ignore[method-assign]

    if step == "after_request":
        getresponse = http.client.HTTPConnection.getresponse

        def answered_then_die(self, *args, **kwargs):
            response = getresponse(self, *args, **kwargs)  # status line read: the API has acted
            if getattr(self, "_method", None) == "POST" and sends["n"] == VICTIM:
                die()
            return response

        http.client.HTTPConnection.getresponse = answered_then_die  # type: ignore[method-assign]

    pending, answered = Ledger.pending, Ledger.answered

    def pending_hook(self, *args, **kwargs):
        if step == "before_pending" and sends["n"] + 1 == VICTIM:
            die()
        return pending(self, *args, **kwargs)

    def answered_hook(self, *args, **kwargs):
        if step == "before_ledger_write" and sends["n"] == VICTIM:
            die()
        result = answered(self, *args, **kwargs)
        if step == "after_ledger_write" and sends["n"] == VICTIM:
            die()
        return result

    Ledger.pending = pending_hook  # type: ignore[method-assign]
    Ledger.answered = answered_hook  # type: ignore[method-assign]
    orders = pa.table({"order_id": ["o1", "o2", "o3"], "phone": ["600000001", "600000002", "600000003"]})
    report = send_sms(client, orders, ledger=state, text="Order {order_id} shipped", default_region="ES",
                      key_column="order_id")
    print(report.summary())


if __name__ == "__main__":
    main(*sys.argv[1:6])
