"""The API token never reaches logs, exception messages, XCom or rendered templates.

The token used here is a long, distinctive string, so any copy of it (in a log line, an
exception, a traceback, an XCom value, a rendered field) is found by a plain substring search.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd
import pytest

from airflow_provider_instasent.client.endpoints import Endpoint
from airflow_provider_instasent.client.errors import (
    AuthenticationError,
    InstasentConnectionError,
    InstasentError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
)
from airflow_provider_instasent.export import Export
from airflow_provider_instasent.ingest import IngestError, ProjectSpecs, write_contacts, write_events
from tests.support import FakeTI

from . import dataset
from .conftest import make_client
from .helpers import ALL_FAULTS

try:
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # Airflow 3.0
    from airflow.exceptions import AirflowFailException

pytestmark = pytest.mark.integration

SECRET = "sk-rel-7Hc9fQ2mZx8LpV4tN6bW3yK5"  # every scope of project demo
LIMITED = "sk-rel-ro-Qv3Lm9Tz2Wx7Nc4Bd8Hf"  # can read, cannot write
UNKNOWN = "sk-rel-unknown-Jp5Rs8Ug1Ye6Ko0"  # not a token of the emulator
SECRETS = (SECRET, LIMITED, UNKNOWN)
CONFIG = {"extends": "default", "tokens": [
    {"token": SECRET, "projects": ["demo"], "scopes": "all"},
    {"token": LIMITED, "projects": ["demo"], "scopes": ["PROJECT_DATASOURCE_READ", "PROJECT_AUDIENCE_READ"]},
]}


def leaks(*texts: Any) -> list[str]:
    """The secrets found in any of ``texts`` (strings, or anything JSON-serialisable)."""
    found = []
    for text in texts:
        blob = text if isinstance(text, str) else json.dumps(text, default=repr)
        found += [s for s in SECRETS if s in blob]
    return found


def exception_texts(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc)), repr(exc.args)]


@pytest.fixture
def secret_emulator(make_emulator):
    return make_emulator(CONFIG)


@pytest.fixture
def conn(secret_emulator, monkeypatch) -> str:
    """``instasent_default`` with the secret token, as Airflow reads it from the environment."""
    monkeypatch.setenv("AIRFLOW_CONN_INSTASENT_DEFAULT", json.dumps({
        "conn_type": "instasent", "host": secret_emulator.base_url, "password": SECRET,
        "extra": {"project": "demo", "max_retries": 10}}))
    return secret_emulator.base_url


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- logs -------------------------------------------------------------------------------------------
def test_token_never_in_logs_during_ingest_export_and_errors(secret_emulator, caplog):
    """Everything at DEBUG, including urllib3 and the retry warnings of a faulty run."""
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "airflow_provider_instasent", "requests"):
        caplog.set_level(logging.DEBUG, logger=name)
    ds = dataset.build(300, 2_000, seed=41)
    url = secret_emulator.base_url
    secret_emulator.set_faults(fault_rate=0.3, fault_kinds=ALL_FAULTS, seed=41)
    with make_client(url, token=SECRET) as client:
        write_contacts(client, ds.contacts, on_invalid="skip", progress_interval=0.001)
        write_events(client, ds.events, on_invalid="skip", progress_interval=0.001)
        Export(client, "audience", progress_interval=0.001).table()
        Export(client, "events", progress_interval=0.001).table()
        assert client.stats.snapshot()["retries"] > 0
    secret_emulator.set_faults(fault_rate=1.0, fault_kinds=["503"])
    with make_client(url, token=SECRET, max_retries=1) as client, pytest.raises((IngestError, InstasentError)):
        write_contacts(client, ds.contacts, on_invalid="skip")
    secret_emulator.set_faults(fault_rate=0.0)
    for token in (LIMITED, UNKNOWN):
        with make_client(url, token=token, max_retries=0) as client, pytest.raises(InstasentError):
            write_contacts(client, ds.contacts, on_invalid="skip")
    with make_client(f"http://127.0.0.1:{closed_port()}", token=SECRET, max_retries=1) as client, \
            pytest.raises(InstasentConnectionError):
        client.get_project()
    assert caplog.records, "nothing was logged: the test would prove nothing"
    texts = [caplog.text] + [f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records]
    assert not leaks(*texts)


# -- exception messages -------------------------------------------------------------------------------
def error_cases(url: str) -> Iterator[tuple[str, Any, type[BaseException]]]:
    yield "401 unknown token", lambda: make_client(url, token=UNKNOWN).get_project(), AuthenticationError
    yield "403 missing scope", lambda: make_client(url, token=LIMITED).push_contacts([{"_user_id": "x"}]), \
        PermissionDeniedError
    yield "404", lambda: make_client(url, token=SECRET).get_contact("nobody"), NotFoundError
    yield "404 project", lambda: make_client(url, token=SECRET, project="nope").get_project(), NotFoundError
    yield "connection refused", lambda: make_client(f"http://127.0.0.1:{closed_port()}", token=SECRET,
                                                    max_retries=1).get_project(), InstasentConnectionError


@pytest.mark.usefixtures("quiet_retries")
def test_token_never_in_exception_messages(secret_emulator):
    url = secret_emulator.base_url
    raised: list[BaseException] = []
    for name, call, cls in error_cases(url):
        with pytest.raises(cls) as info:
            call()
        raised.append(info.value)
        assert not leaks(*exception_texts(info.value)), name
    for kind, cls in (("503", ServerError), ("drop_before", InstasentConnectionError),
                      ("drop_after", InstasentConnectionError)):
        secret_emulator.set_faults(fault_rate=1.0, fault_kinds=[kind])
        for retries in (0, 2):
            with make_client(url, token=SECRET, max_retries=retries) as client, pytest.raises(cls) as info:
                client.push_contacts([{"_user_id": "x"}])
            assert not leaks(*exception_texts(info.value)), kind
    secret_emulator.set_faults(fault_rate=0.0, latency_ms=400)
    with make_client(url, token=SECRET, timeout=(2.0, 0.1), max_retries=1) as client, \
            pytest.raises(InstasentConnectionError) as info:
        client.get_project()
    assert "Timeout" in str(info.value) and not leaks(*exception_texts(info.value))
    secret_emulator.set_faults(latency_ms=0)
    # an ingest run that stops: its error, its report and its rejects
    with make_client(url, token=SECRET, max_retries=0) as client:
        specs = ProjectSpecs.load(client, kind="contacts")
        secret_emulator.set_faults(fault_rate=1.0, fault_kinds=["500"])
        with pytest.raises(IngestError) as info:
            write_contacts(client, pd.DataFrame({"_user_id": ["a", "b"]}), specs=specs)
    secret_emulator.set_faults(fault_rate=0.0)
    report = info.value.report
    assert report.unknown == 2  # a 500: the rows may be stored
    assert not leaks(*exception_texts(info.value), report.to_dict(), report.rejects.to_json(), report.summary())


class EchoHandler(BaseHTTPRequestHandler):
    """A hostile (or badly logging) server: it puts the request's Authorization header in the body."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        status, mode = self.server.answer  # type: ignore[attr-defined]
        auth = self.headers.get("Authorization", "")
        if mode == "json":
            body = json.dumps({"message": f"rejected credentials {auth}", "detail": auth.split()[-1],
                               "errors": [{"error": auth}]}).encode()
        else:
            body = f"<html>Forbidden for {auth} (token {auth.split()[-1]})</html>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if mode == "json" else "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 429, 500, 503])
@pytest.mark.parametrize("mode", ["json", "text"])
def test_a_server_echoing_the_token_does_not_leak_it_into_exceptions(status, mode):
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    server.answer = (status, mode)  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with make_client(url, token=SECRET, max_retries=0) as client, pytest.raises(InstasentError) as info:
            client.call(Endpoint("echo", "GET", "/echo"))
        error = info.value
        assert not leaks(*exception_texts(error))
    finally:
        server.shutdown()
        server.server_close()


# -- XCom -------------------------------------------------------------------------------------------
def test_token_never_in_operator_return_values_or_pushed_xcom(conn, secret_emulator, tmp_path, monkeypatch):
    from airflow_provider_instasent.ingest import RejectedRowsError
    from airflow_provider_instasent.operators.export import InstasentToParquetOperator, InstasentToSqlOperator
    from airflow_provider_instasent.operators.ingest import (
        InstasentDeleteContactsOperator,
        InstasentIngestOperator,
    )
    from airflow_provider_instasent.operators.sms import InstasentSendSmsOperator

    monkeypatch.setenv("AIRFLOW_CONN_RELIABILITY_SQLITE",
                       json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.sqlite")}))
    contacts = pd.DataFrame({"_user_id": ["x1", "x2"], "_phone_mobile": ["+34600000001", "+34600000002"]})
    results = [
        InstasentIngestOperator(task_id="c", kind="contacts", python_callable=lambda: contacts).execute({}),
        InstasentToSqlOperator(task_id="s", sql_conn_id="reliability_sqlite", table="aud").execute({}),
        InstasentToParquetOperator(task_id="p", path=str(tmp_path / "a.parquet")).execute({}),
        InstasentSendSmsOperator(task_id="m", user_id="x1", text="hello").execute({}),
        InstasentDeleteContactsOperator(task_id="d", user_ids=["x2", "nobody"]).execute({}),
    ]
    ti = FakeTI()
    bad = pd.DataFrame({"_user_id": ["x1"], "order_id": ["o"], "amount": [None]})  # amount is required
    # RejectedRowsError, or an AirflowFailException caused by it (a retry would fail the same way)
    with pytest.raises((RejectedRowsError, AirflowFailException)) as failed:
        InstasentIngestOperator(task_id="e", kind="events", event_type="ecommerce_order_create",
                                python_callable=lambda: bad).execute({"ti": ti})
    assert isinstance(failed.value, RejectedRowsError) or isinstance(failed.value.__cause__, RejectedRowsError)
    assert not leaks(*exception_texts(failed.value))
    # a token that may read the specs but not write: the push fails with a 403 mid-run
    monkeypatch.setenv("AIRFLOW_CONN_INSTASENT_DEFAULT", json.dumps({
        "conn_type": "instasent", "host": conn, "password": LIMITED, "extra": {"project": "demo"}}))
    # a 403 is final: the operator fails the task without an Airflow retry, the cause kept
    with pytest.raises(AirflowFailException) as refused:
        InstasentIngestOperator(task_id="c", kind="contacts", python_callable=lambda: contacts).execute({"ti": ti})
    assert isinstance(refused.value.__cause__, IngestError)
    assert not leaks(*exception_texts(refused.value))
    assert "PROJECT_DATASOURCE_WRITE" in ti.xcom["ingest_report"]["error"]  # the reason, without the token
    assert results[0]["accepted"] == 2 and results[3]["sent"] is True
    assert not leaks(*results, ti.xcom)


# -- rendered templates -------------------------------------------------------------------------------
def test_token_never_in_rendered_template_fields(conn, tmp_path):
    from airflow_provider_instasent.operators.export import InstasentToParquetOperator, InstasentToSqlOperator
    from airflow_provider_instasent.operators.ingest import (
        InstasentDeleteContactsOperator,
        InstasentIngestOperator,
    )
    from airflow_provider_instasent.operators.sms import InstasentSendSmsOperator

    context = {"ds": "2024-03-01", "ds_nodash": "20240301", "run_id": "manual__1", "params": {"segment": "pro_plan",
               "table": "aud", "user": "x1", "rejects": str(tmp_path)}, "conn": None}
    operators = [
        InstasentIngestOperator(task_id="i", kind="events", path=str(tmp_path / "{{ ds }}.parquet"),
                                event_type="{{ 'page_view' }}", rejects_path="{{ params.rejects }}/{{ ds }}.parquet",
                                project="{{ 'demo' }}", datasource="dsapi", columns={"a": "{{ '_user_id' }}"}),
        InstasentDeleteContactsOperator(task_id="d", user_ids="{{ params.user }}"),
        InstasentToSqlOperator(task_id="s", sql_conn_id="w", table="{{ params.table }}", source="segment",
                               segment="{{ params.segment }}"),
        InstasentToParquetOperator(task_id="p", path=str(tmp_path / "{{ ds_nodash }}.parquet")),
        InstasentSendSmsOperator(task_id="m", user_id="{{ params.user }}", text="Order {{ ds }}"),
    ]
    for op in operators:
        op.render_template_fields(context)
        rendered = {name: getattr(op, name) for name in op.template_fields}
        assert "{{" not in json.dumps(rendered, default=str)
        assert not leaks(rendered, {k: repr(v) for k, v in vars(op).items()})
    # the token itself is never a template field or an operator attribute: it stays in the connection
    from airflow_provider_instasent.hooks.instasent import InstasentHook

    hook = InstasentHook()
    with hook.get_conn() as client:
        assert not leaks(repr(client), repr(hook), {k: repr(v) for k, v in vars(hook).items()})


def test_airflow_masks_the_token_once_the_hook_has_read_the_connection(conn):
    """Loading the connection registers the password with Airflow's secrets masker, which redacts
    task logs and the rendered fields Airflow stores, even a template that prints the token."""
    try:
        from airflow.sdk.log import redact
    except ImportError:  # pragma: no cover - Airflow without the task SDK masker
        pytest.skip("this Airflow has no airflow.sdk.log.redact")
    from airflow_provider_instasent.hooks.instasent import InstasentHook

    InstasentHook().client_config()
    assert not leaks(redact(f"rendered: {SECRET}"), redact({"text": f"Bearer {SECRET}"}))
