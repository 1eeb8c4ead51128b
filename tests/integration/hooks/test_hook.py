"""InstasentHook: Connection → client, connection form metadata, test_connection."""

from __future__ import annotations

import json
import logging

import pytest

from airflow_provider_instasent.client import InstasentClient


def _set_conn(monkeypatch, conn_id: str, **conn) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "instasent", **conn}))


def test_hook_builds_client_from_connection(monkeypatch):
    from airflow_provider_instasent.hooks.instasent import InstasentHook

    _set_conn(monkeypatch, "inst_a", host="http://127.0.0.1:1234", password="tok-123456",
              extra={"project": "acme", "datasource": "crm", "timeout": 12, "max_retries": 2, "verify": "false"})
    hook = InstasentHook("inst_a")
    cfg = hook.client_config()
    assert cfg["base_url"] == "http://127.0.0.1:1234"
    assert cfg["project"] == "acme" and cfg["datasource"] == "crm"
    assert cfg["timeout"] == (10.0, 12.0) and cfg["max_retries"] == 2 and cfg["verify"] is False
    client = hook.get_conn()
    assert isinstance(client, InstasentClient)
    assert client.session.headers["Authorization"] == "Bearer tok-123456"
    assert client.retry.max_retries == 2


def test_hook_defaults(monkeypatch):
    from airflow_provider_instasent.hooks.instasent import InstasentHook

    _set_conn(monkeypatch, "instasent_default", password="tok-123456", extra={"project": "p"})
    cfg = InstasentHook().client_config()
    assert cfg["base_url"] == "https://api.instasent.com"
    assert cfg["datasource"] == "dsapi" and cfg["verify"] is True
    assert InstasentHook(project="other", datasource="x").client_config()["project"] == "other"


def test_hook_uri_form_and_ca_bundle(monkeypatch):
    from airflow_provider_instasent.hooks.instasent import InstasentHook

    monkeypatch.setenv("AIRFLOW_CONN_INST_URI",
                       "instasent://:tok-123456@api.example.com/?project=p1&max_retries=3&verify=%2Fetc%2Fca.pem")
    cfg = InstasentHook("inst_uri").client_config()
    assert cfg["base_url"] == "https://api.example.com"
    assert cfg["max_retries"] == 3 and cfg["verify"] == "/etc/ca.pem" and cfg["project"] == "p1"


def test_missing_token_is_a_clear_error(monkeypatch):
    from airflow_provider_instasent.client import InstasentError
    from airflow_provider_instasent.hooks.instasent import InstasentHook

    _set_conn(monkeypatch, "inst_nt", host="http://h", extra={"project": "p"})
    with pytest.raises(InstasentError, match="password field"):
        InstasentHook("inst_nt").get_conn()


def test_provider_info_declares_connection_type():
    from airflow_provider_instasent.get_provider_info import get_provider_info

    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-instasent"
    (ct,) = info["connection-types"]
    assert ct["connection-type"] == "instasent"
    assert ct["hook-class-name"] == "airflow_provider_instasent.hooks.instasent.InstasentHook"
    assert ct["ui-field-behaviour"]["relabeling"]["password"] == "API token"
    assert {"project", "datasource", "timeout", "max_retries", "verify"} <= set(ct["conn-fields"])


def test_providers_manager_sees_the_hook():
    from airflow.providers_manager import ProvidersManager

    assert "airflow-provider-instasent" in ProvidersManager().providers
    try:  # Airflow >= 3.2 moved hook discovery to the task runtime
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

        hooks = ProvidersManagerTaskRuntime().hooks
    except ImportError:
        hooks = ProvidersManager().hooks
    assert "instasent" in hooks
    assert hooks["instasent"].hook_class_name == "airflow_provider_instasent.hooks.instasent.InstasentHook"


@pytest.mark.integration
def test_test_connection_reports_scopes(instasent_conn, caplog):
    from airflow_provider_instasent.hooks.instasent import InstasentHook

    caplog.set_level(logging.DEBUG)
    ok, message = InstasentHook().test_connection()
    assert ok, message
    assert "PROJECT_AUDIENCE_LIST" in message and "demo" in message
    assert "demo-admin-token" not in message and "demo-admin-token" not in caplog.text


@pytest.mark.integration
def test_test_connection_reports_project_datasource_and_data_level(emu, monkeypatch):
    from airflow_provider_instasent.hooks.instasent import InstasentHook

    _set_conn(monkeypatch, "inst_ok", host=emu, password="demo-admin-token", extra={"project": "demo"})
    ok, message = InstasentHook("inst_ok").test_connection()
    assert ok, message
    assert "project demo (Demo project)" in message and "datasource dsapi (Ingest API)" in message
    assert "audience data level: full (from PROJECT_AUDIENCE_DATA_FULL" in message

    _set_conn(monkeypatch, "inst_ro", host=emu, password="demo-readonly-token", extra={"project": "demo"})
    ok, message = InstasentHook("inst_ro").test_connection()
    assert ok, message
    assert "audience data level: default (no PROJECT_AUDIENCE_DATA_* scope" in message
    assert "PROJECT_AUDIENCE_READ" in message


@pytest.mark.integration
@pytest.mark.parametrize("token", ["demo-admin-token", "demo-dsapi-token"])
def test_test_connection_fails_on_a_wrong_project(emu, monkeypatch, token):
    from airflow_provider_instasent.hooks.instasent import InstasentHook

    _set_conn(monkeypatch, "inst_wp", host=emu, password=token, extra={"project": "demo-prod"})
    ok, message = InstasentHook("inst_wp").test_connection()
    assert not ok, message
    assert "'demo-prod'" in message and "not" in message
    if token == "demo-admin-token":
        assert message == ("project 'demo-prod' is not visible to this token (it sees: demo): "
                           "check the project UID")
    assert token not in message


@pytest.mark.integration
@pytest.mark.parametrize("token", ["demo-admin-token", "demo-dsapi-token"])
def test_test_connection_fails_on_a_wrong_datasource(emu, monkeypatch, token):
    from airflow_provider_instasent.hooks.instasent import InstasentHook

    _set_conn(monkeypatch, "inst_wd", host=emu, password=token, extra={"project": "demo", "datasource": "nope"})
    ok, message = InstasentHook("inst_wd").test_connection()
    assert not ok, message
    assert "'nope'" in message and "not found" in message


@pytest.mark.integration
def test_test_connection_without_a_project_says_which_it_sees(emu, monkeypatch):
    from airflow_provider_instasent.hooks.instasent import InstasentHook

    _set_conn(monkeypatch, "inst_np", host=emu, password="demo-admin-token")
    ok, message = InstasentHook("inst_np").test_connection()
    assert not ok
    assert "no project" in message and "sees: demo" in message


@pytest.mark.integration
def test_test_connection_with_datasource_token(emu, monkeypatch):
    from airflow_provider_instasent.hooks.instasent import InstasentHook

    _set_conn(monkeypatch, "inst_ds", host=emu, password="demo-dsapi-token", extra={"project": "demo"})
    ok, message = InstasentHook("inst_ds").test_connection()
    assert ok, message
    assert "datasource dsapi" in message


@pytest.mark.integration
def test_test_connection_bad_token(emu, monkeypatch):
    from airflow_provider_instasent.hooks.instasent import InstasentHook

    _set_conn(monkeypatch, "inst_bad", host=emu, password="wrong-token-xyz", extra={"project": "demo"})
    ok, message = InstasentHook("inst_bad").test_connection()
    assert not ok
    assert "401" in message and "wrong-token-xyz" not in message


@pytest.mark.integration
def test_airflow_sdk_connection_test(instasent_conn):
    from airflow.sdk import Connection

    ok, message = Connection.get("instasent_default").test_connection()
    assert ok, message


def test_the_hidden_form_fields_are_never_read(monkeypatch):
    """The connection form hides schema and login (docs/airflow.md): a value left in them
    changes nothing; the port is shown, and used only when the Base URL has none."""
    from airflow_provider_instasent.get_provider_info import UI_FIELD_BEHAVIOUR
    from airflow_provider_instasent.hooks.instasent import InstasentHook

    assert set(UI_FIELD_BEHAVIOUR["hidden-fields"]) == {"schema", "login"}
    assert InstasentHook.get_ui_field_behaviour()["hidden_fields"] == ["schema", "login"]
    _set_conn(monkeypatch, "inst_plain", host="https://api.example.com", password="tok-123456", extra={"datasource": "crm"})
    plain = InstasentHook("inst_plain").client_config()
    monkeypatch.setenv("AIRFLOW_CONN_INST_HIDDEN", json.dumps({
        "conn_type": "instasent", "host": "https://api.example.com", "password": "tok-123456",
        "schema": "http", "login": "someone", "extra": {"datasource": "crm"}}))
    hidden = InstasentHook("inst_hidden").client_config()
    assert hidden == plain and hidden["project"] is None and hidden["base_url"] == "https://api.example.com"
    monkeypatch.setenv("AIRFLOW_CONN_INST_PORT", "instasent://:tok-123456@127.0.0.1:8089/?project=p1")
    assert InstasentHook("inst_port").client_config()["base_url"] == "http://127.0.0.1:8089"
    monkeypatch.setenv("AIRFLOW_CONN_INST_PORT2", json.dumps({
        "conn_type": "instasent", "host": "https://api.example.com:8443/", "port": 9999, "password": "tok-123456"}))
    assert InstasentHook("inst_port2").client_config()["base_url"] == "https://api.example.com:8443/"
