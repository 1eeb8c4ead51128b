"""The emulator is safe to run on a developer machine and refuses what the real API refuses.

* It binds to the loopback interface unless told otherwise (CLI, ``Emulator``, ``running``).
* Through the client, every refusal raises the documented exception class, and the message
  names what is missing: scopes, plan levels, datasource-token limits, project isolation.
"""

from __future__ import annotations

import inspect
import socket
import subprocess
import sys

import pandas as pd
import pytest

from airflow_provider_instasent.client.errors import (
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
)
from airflow_provider_instasent.emulator import Emulator, running
from airflow_provider_instasent.ingest import RequestFailedError, write_contacts

from .conftest import DSAPI_TOKEN, READONLY_TOKEN, make_client

pytestmark = pytest.mark.integration


# -- loopback ---------------------------------------------------------------------------------------
def non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not 127.x (None when there is none)."""
    candidates = set()
    try:
        candidates.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for a UDP connect
            candidates.add(probe.getsockname()[0])
    except OSError:
        pass
    return next((a for a in sorted(candidates) if not a.startswith("127.") and a != "0.0.0.0"), None)


def test_the_emulator_binds_to_loopback_by_default():
    from airflow_provider_instasent.emulator.__main__ import build_parser

    assert build_parser().parse_args([]).host == "127.0.0.1"
    assert inspect.signature(running).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(Emulator).parameters["host"].default == "127.0.0.1"
    with Emulator() as emu:
        assert emu.bind().server_address[0] == "127.0.0.1"
        assert emu.base_url.startswith("http://127.0.0.1:")
        address = non_loopback_address()
        if address is not None:  # reachable on 127.0.0.1 only, not from the network
            with pytest.raises(OSError), socket.create_connection((address, emu.port), timeout=2):
                pass
        with socket.create_connection(("127.0.0.1", emu.port), timeout=2):
            pass


def test_the_command_line_emulator_listens_on_loopback():
    proc = subprocess.Popen([sys.executable, "-m", "airflow_provider_instasent.emulator", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip() if proc.stdout else ""
        assert line.startswith("listening on http://127.0.0.1:"), line
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


# -- scopes -----------------------------------------------------------------------------------------
READONLY_REFUSALS = {
    "push_contacts": (lambda c: c.push_contacts([{"_user_id": "x"}]), "PROJECT_DATASOURCE_WRITE"),
    "delete_contact": (lambda c: c.delete_contact("x"), "PROJECT_DATASOURCE_WRITE"),
    "scroll_audience": (lambda c: list(c.scroll_audience()), "PROJECT_AUDIENCE_LIST"),
    "scroll_events": (lambda c: list(c.scroll_events()), "PROJECT_AUDIENCE_DATA_EVENTS"),
    "aggregate": (lambda c: c.aggregate_audience({"n": {"type": "count"}}), "PROJECT_AGGREGATIONS"),
    "send_sms": (lambda c: c.send_direct_sms("000000000000000000000001", "hi"), "PROJECT_DIRECT_WRITE"),
    "audience_action": (lambda c: c.audience_action("sms-unsubscribe", "000000000000000000000001"),
                        "PROJECT_AUDIENCE_WRITE"),
    "create_datasource": (lambda c: c.create_datasource("x", ["tag"]), "PROJECT_DATASOURCE_WRITE"),
}


@pytest.mark.parametrize("name", sorted(READONLY_REFUSALS))
def test_a_missing_scope_is_refused_and_named(name, emulator):
    call, scope = READONLY_REFUSALS[name]
    with make_client(emulator.base_url, token=READONLY_TOKEN, max_retries=0) as client, \
            pytest.raises(PermissionDeniedError) as info:
        call(client)
    error = info.value
    assert error.status == 403 and error.attempts == 1  # a 403 is never retried
    assert error.missing_scope == scope
    assert f"grant the token the scope {scope}" in str(error)


def test_an_ingest_run_without_the_write_scope_stops_and_names_it(emulator):
    with make_client(emulator.base_url, token=READONLY_TOKEN) as client, pytest.raises(RequestFailedError) as info:
        write_contacts(client, pd.DataFrame({"_user_id": ["a", "b"]}))
    assert "PROJECT_DATASOURCE_WRITE" in str(info.value)
    assert set(info.value.report.rejects["stage"]) == {"api"}
    assert emulator.state()["contacts"]["dsapi"] == 0


# -- plan levels ------------------------------------------------------------------------------------
PLAN_S = {"extends": "default", "organization": {"plan": {"key": "S", "allowedScopes": ["PROJECT_AUDIENCE_DATA_BASIC"]}},
          "tokens": [{"token": "plan-s-all", "projects": ["demo"], "scopes": "all"}]}


@pytest.mark.parametrize(("call", "scope", "words"), [
    (lambda c: list(c.scroll_audience()), "PROJECT_AUDIENCE_LIST", ["plan 'S'", "a subscription plan"]),
    (lambda c: list(c.scroll_events()), "PROJECT_AUDIENCE_DATA_EVENTS", ["plan 'S'", "a subscription plan"]),
    (lambda c: c.aggregate_audience({"n": {"type": "count"}}), "PROJECT_AGGREGATIONS",
     ["manually granted", "a manual grant"]),
], ids=["list", "events", "aggregations"])
def test_a_scope_the_plan_does_not_include_is_refused_and_named(call, scope, words, make_emulator):
    emulator = make_emulator(PLAN_S)
    with make_client(emulator.base_url, token="plan-s-all", max_retries=0) as client, \
            pytest.raises(PermissionDeniedError) as info:
        call(client)
    assert info.value.missing_scope == scope and scope in str(info.value)
    assert info.value.body["planLevel"] == "S"
    for word in words:
        assert word in str(info.value)


def test_the_plan_caps_the_privacy_level_and_the_export_names_the_scope(make_emulator):
    from airflow_provider_instasent.export import Export

    emulator = make_emulator(PLAN_S)
    with make_client(emulator.base_url, token="plan-s-all") as client:
        client.push_contacts([{"_user_id": "u1", "_email": "u1@example.com", "plan": "pro"}])
        attrs = client.get_audience_contact_by_user("u1")["attributesData"]
        assert attrs["_email"] == "u1@example.com" and "plan" not in attrs  # basic level, not full
        assert "PROJECT_AUDIENCE_DATA_FULL" not in client.token_scopes()
        with pytest.raises(PermissionDeniedError, match="PROJECT_AUDIENCE_LIST"):
            Export(client, "audience").table()


# -- datasource tokens ------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "call"), [
    ("push to another datasource", lambda c: c.push_contacts([{"_user_id": "x"}], datasource="crm")),
    ("token info", lambda c: c.get_token_info()),
    ("project", lambda c: c.get_project()),
    ("audience lookup", lambda c: c.get_audience_contact_by_user("x")),
    ("audience scroll", lambda c: list(c.scroll_audience())),
    ("datasource list", lambda c: list(c.list_datasources())),
    ("another datasource's stats", lambda c: c.get_stats("crm")),
])
def test_a_datasource_token_is_limited_to_its_datasource(name, call, emulator):
    with make_client(emulator.base_url, token=DSAPI_TOKEN, max_retries=0) as client:
        assert client.push_contacts([{"_user_id": "mine"}]).ok  # its own datasource: allowed
        with pytest.raises(PermissionDeniedError) as info:
            call(client)
    assert info.value.body["restriction"] == "datasource-token"
    assert "Datasource tokens" in str(info.value) and "dsapi" in str(info.value)
    assert emulator.state()["contacts"] == {"dsapi": 1, "crm": 0}


# -- project isolation ------------------------------------------------------------------------------
TWO_PROJECTS = {"extends": "default", "projects": [{
    "uid": "brand2", "id": 2002, "datasources": [{"uid": "dsapi", "id": 3101, "priority": 1}],
    "attributes": [{"uid": "plan", "dataType": "string"}],
    "eventTypes": [{"uid": "page_view", "parameters": [{"parameter": "url", "required": True}]}]}],
    "tokens": [{"token": "brand2-admin", "projects": ["brand2"], "scopes": "all"}]}


@pytest.mark.parametrize(("name", "call"), [
    ("project", lambda c: c.get_project()),
    ("push", lambda c: c.push_contacts([{"_user_id": "x"}])),
    ("contact", lambda c: c.get_contact("shared")),
    ("audience", lambda c: c.get_audience_contact_by_user("shared")),
    ("scroll", lambda c: list(c.scroll_audience())),
])
def test_a_project_token_never_reaches_another_project(name, call, make_emulator):
    emulator = make_emulator(TWO_PROJECTS)
    with make_client(emulator.base_url) as demo:
        demo.push_contacts([{"_user_id": "shared", "plan": "pro"}])
    with make_client(emulator.base_url, token="brand2-admin", project="demo", max_retries=0) as intruder, \
            pytest.raises(NotFoundError) as info:  # 404, not 403: the project's existence is not revealed
        call(intruder)
    assert "demo" in str(info.value)
    with make_client(emulator.base_url, token="brand2-admin", project="brand2") as brand2:
        with pytest.raises(NotFoundError):
            brand2.get_contact("shared")  # the same _user_id in another project is another contact
        assert list(brand2.scroll_audience()) == []
    assert emulator.state("demo")["contacts"]["dsapi"] == 1 and emulator.state("brand2")["contacts"]["dsapi"] == 0


def test_an_unknown_token_is_refused(emulator):
    with make_client(emulator.base_url, token="not-a-token", max_retries=3) as client, \
            pytest.raises(AuthenticationError) as info:
        client.get_project()
    assert info.value.status == 401 and info.value.attempts == 1
    assert "check the API token" in str(info.value)
