"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

_CONN_FIELDS: dict[str, Any] = {
    "project": {
        "label": "Project UID",
        "description": "UID of the Instasent project (not its numeric id).",
        "schema": {"type": ["string", "null"]},
    },
    "datasource": {
        "label": "Datasource UID",
        "description": "Datasource for ingest calls; 'dsapi' is the project's first API datasource.",
        "schema": {"type": ["string", "null"], "default": "dsapi"},
    },
    "timeout": {
        "label": "Timeout (s)",
        "description": "Read timeout of every request, seconds.",
        "schema": {"type": ["number", "null"], "default": 60, "minimum": 1},
    },
    "max_retries": {
        "label": "Max retries",
        "description": "Retries on 429, 5xx and lost connections (with backoff honouring Retry-After).",
        "schema": {"type": ["integer", "null"], "default": 5, "minimum": 0},
    },
    "verify": {
        "label": "TLS verification",
        "description": "true (default), false, or the path of a CA bundle.",
        "schema": {"type": ["string", "null"], "default": "true"},
    },
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-instasent",
        "name": "Instasent",
        "description": "Instasent customer-data and SMS platform: bulk ingest of contacts and events, "
        "audience and segment export, direct SMS.",
        "integrations": [
            {
                "integration-name": "Instasent",
                "external-doc-url": "https://docs.instasent.com/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {"integration-name": "Instasent", "python-modules": ["airflow_provider_instasent.hooks.instasent"]}
        ],
        "operators": [
            {
                "integration-name": "Instasent",
                "python-modules": [
                    "airflow_provider_instasent.operators.ingest",
                    "airflow_provider_instasent.operators.export",
                    "airflow_provider_instasent.operators.sms",
                    "airflow_provider_instasent.operators.sync",
                ],
            }
        ],
        "connection-types": [
            {
                "connection-type": "instasent",
                "hook-class-name": "airflow_provider_instasent.hooks.instasent.InstasentHook",
                "hook-name": "Instasent",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"host": "Base URL", "password": "API token"},
                    "placeholders": {"host": "https://api.instasent.com", "extra": '{"project": "my-project"}'},
                },
                "conn-fields": _CONN_FIELDS,
            }
        ],
    }
