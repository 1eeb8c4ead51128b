"""A 2xx push answer the client cannot read is not evidence of acceptance (issue 18, case 1)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from airflow_provider_instasent import InstasentClient
from airflow_provider_instasent.ingest import ProjectSpecs, RequestFailedError, write_contacts
from tests.support.hostile_server import HostileServer
from tests.support.ingest_helpers import ATTRIBUTES, EVENT_TYPES

JSON = {"Content-Type": "application/json"}


def _answer_with(status: int, headers: dict[str, str], body: bytes):
    def handler(method: str, path: str, payload: bytes):
        return status, headers, body
    return handler


@pytest.mark.parametrize(("status", "headers", "body"), [
    (200, {"Content-Type": "text/html"}, b"<html><body>Bad gateway, but 200</body></html>"),
    (200, JSON, b'{"accepted": [{"position": 0}, {"posi'),  # truncated JSON
    (202, JSON, b""),  # empty body
    (200, JSON, json.dumps({"accepted": [{"position": i % 2} for i in range(100)]}).encode()),  # repeats
    (200, JSON, json.dumps({"accepted": [{"position": i} for i in range(100)], "entitiesSuccess": 7}).encode()),
])
def test_an_unreadable_push_answer_counts_nothing_as_accepted(status, headers, body):
    frame = pd.DataFrame({"_user_id": [f"u{i}" for i in range(250)]})
    with HostileServer(_answer_with(status, headers, body)) as server, \
            InstasentClient(token="t0ken-secret", project="demo", base_url=server.base_url, max_retries=0) as client:
        with pytest.raises(RequestFailedError) as info:
            write_contacts(client, frame, specs=ProjectSpecs.from_specs(ATTRIBUTES, EVENT_TYPES),
                           max_in_flight=1, progress_interval=0)
    report = info.value.report
    assert report.accepted == 0
    assert report.rows == report.accepted + report.rejected + report.skipped
    assert report.rejected >= 100 and set(report.rejects["stage"]) == {"api"}
    assert report.rejects["reason"].str.contains("not counted as accepted").all()


def test_nothing_listening_is_said_in_seconds():
    """A base URL where nothing listens: a clear message within seconds, not half a minute."""
    import socket
    import time

    from airflow_provider_instasent.client.errors import InstasentConnectionError

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with InstasentClient(token="t0ken", project="demo", base_url=f"http://127.0.0.1:{port}") as client, \
            pytest.raises(InstasentConnectionError, match=r"nothing is listening at http://127\.0\.0\.1"):
        client.get_token_info()
    assert time.monotonic() - started < 6
