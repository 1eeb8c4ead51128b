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
    assert report.rows == report.accepted + report.rejected + report.unknown + report.skipped
    # a 2xx was answered: the rows may be stored, so their outcome is unknown (not rejected)
    assert report.unknown >= 100 and report.rejected == 0 and set(report.rejects["stage"]) == {"unknown"}
    assert report.rejects["reason"].str.contains("outcome unknown").all()
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


def test_a_token_echoed_by_the_server_is_kept_nowhere(tmp_path):
    """Per-item errors and a 500 body that echo the token: not in the rejects (memory and file),
    the error message, the report's dict, or the exception's body (issue 18, case 7)."""
    import pyarrow.parquet as pq

    from airflow_provider_instasent.client.errors import ServerError

    token = "s3cr3t-t0ken-value"

    def handler(method: str, path: str, body: bytes):
        items = json.loads(body)
        if len(items) == 1:  # the single-item request: an echoing 500
            return 500, JSON, json.dumps({"message": f"boom for Bearer {token}", "token": token}).encode()
        errors = [{"position": i, "error": f"bad token {token} in Authorization: Bearer {token}",
                   "item": {**item, "auth": token}} for i, item in enumerate(items)]
        return 200, JSON, json.dumps({"accepted": [], "errors": errors, "entitiesSuccess": 0,
                                      "entitiesFailures": len(items)}).encode()

    frame = pd.DataFrame({"_user_id": [f"u{i}" for i in range(5)]})
    specs = ProjectSpecs.from_specs(ATTRIBUTES, EVENT_TYPES)
    with HostileServer(handler) as server, \
            InstasentClient(token=token, project="demo", base_url=server.base_url, max_retries=0) as client:
        report = write_contacts(client, frame, specs=specs, on_invalid="skip", progress_interval=0,
                                rejects_path=tmp_path / "rejects.parquet")
        assert report.rejected == 5
        with pytest.raises(ServerError) as info:
            client.push_contacts([{"_user_id": "x"}])
    stored = [report.rejects.to_csv(), str(report.to_dict()), report.summary(),
              pq.read_table(tmp_path / "rejects.parquet").to_pandas().to_csv(),
              str(info.value), repr(info.value), json.dumps(info.value.body)]
    assert all(token not in text for text in stored), [t for t in stored if token in t]
    assert "***" in report.rejects.reason[0]


def test_a_trickling_server_is_cut_off_by_the_request_deadline():
    """One byte every 0.3 s with a 1 s read timeout: each read succeeds, so only a deadline for the
    whole answer bounds it (issue 18, case 10)."""
    import socket
    import threading
    import time

    from airflow_provider_instasent.client.errors import InstasentConnectionError

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
                for _ in range(200):
                    if stop.is_set():
                        return
                    try:
                        conn.sendall(b" ")
                    except OSError:
                        break
                    time.sleep(0.3)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        with InstasentClient(token="t0ken", project="demo", base_url=f"http://127.0.0.1:{server.getsockname()[1]}",
                             timeout=(1.0, 1.0), max_retries=1, max_retry_time=3.0) as client, \
                pytest.raises(InstasentConnectionError, match="deadline"):
            client.get_token_info()
    finally:
        stop.set()
        server.close()
    assert time.monotonic() - started < 10  # 2 attempts of at most 3 s (connect + 2 x read), plus a backoff


@pytest.mark.parametrize(("statuses", "unknown"), [
    ([503, 503], True),   # a gateway's 5xx may come after the API stored the rows
    ([429, 429], False),  # the API refused both attempts: nothing was stored
    ([503, 429], True),   # the first attempt may have stored them, whatever the last one says
    ([400], False),
])
def test_rows_of_a_failed_push_are_unknown_only_when_the_api_may_have_stored_them(statuses, unknown):
    """"rejected (api)" only when every attempt certainly left the API untouched; otherwise the
    rows count as ``unknown`` (issue 18 case 11), and the counts still add up."""
    calls = [0]

    def handler(method: str, path: str, payload: bytes):
        status = statuses[min(calls[0], len(statuses) - 1)]
        calls[0] += 1
        return status, {**JSON, "Retry-After": "0"}, json.dumps({"message": "no"}).encode()

    frame = pd.DataFrame({"_user_id": [f"u{i}" for i in range(10)]})
    with HostileServer(handler) as server, \
            InstasentClient(token="t0ken", project="demo", base_url=server.base_url, max_retries=len(statuses) - 1,
                            backoff_base=0.01) as client, pytest.raises(RequestFailedError) as info:
        write_contacts(client, frame, specs=ProjectSpecs.from_specs(ATTRIBUTES, EVENT_TYPES), progress_interval=0)
    report = info.value.report
    assert calls[0] == len(statuses)
    assert (report.unknown, report.rejected_api) == ((10, 0) if unknown else (0, 10))
    assert set(report.rejects["stage"]) == {"unknown" if unknown else "api"}
    assert report.rows == report.accepted + report.rejected + report.unknown + report.skipped
