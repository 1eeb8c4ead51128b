"""``Transport.server_time``: the server's clock from the last response's ``Date`` header."""

from __future__ import annotations

import datetime as dt
import time

from airflow_provider_instasent import InstasentClient


def test_server_time_from_the_date_header():
    client = InstasentClient(token="t", base_url="http://127.0.0.1:9")
    assert client.server_time() is None  # no response seen yet
    client._server_date = ("Wed, 02 Jan 2030 03:04:05 GMT", time.time() - 10.0)
    now = client.server_time()
    assert now is not None and now.tzinfo is not None
    # the header's time plus the local time elapsed since it arrived
    assert abs((now - dt.datetime(2030, 1, 2, 3, 4, 15, tzinfo=dt.UTC)).total_seconds()) < 1
    client._server_date = ("not a date", time.time())
    assert client.server_time() is None
