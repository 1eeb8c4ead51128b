"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point.

Apache Airflow is the extra ``airflow`` (docs/adr/0008-packaging-airflow-extra.md):
``require_airflow`` checks it is installed and in the supported range, and names the
extra when it is not. It reads the installed distribution's metadata, never imports Airflow.
"""

from __future__ import annotations

import re
from importlib import metadata
from typing import Any

#: The Airflow versions this provider supports (also the ``airflow`` extra in pyproject.toml).
MIN_AIRFLOW_VERSION = (3, 0, 0)
INSTALL_HINT = 'pip install "airflow-provider-instasent[airflow]"'


def _version_tuple(version: str) -> tuple[int, ...]:
    match = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    return tuple(int(part or 0) for part in match.groups()) if match else (0, 0, 0)


def require_airflow(version: str | None = None) -> str:
    """The installed Apache Airflow version; an ImportError naming the extra if it is missing
    or older than the oldest supported one (3.0.0, CI's ``./dev test-oldest``).

    ``version`` replaces the installed version (for tests).
    """
    if version is None:
        try:
            version = metadata.version("apache-airflow")
        except metadata.PackageNotFoundError:
            raise ImportError(
                "the Instasent Airflow provider (hooks, operators, connection type) needs Apache Airflow, "
                f"which is not installed: {INSTALL_HINT}. The client, the dataframe loader "
                "(airflow_provider_instasent.dataframe) and the emulator work without it."
            ) from None
    found = _version_tuple(version)
    if found < MIN_AIRFLOW_VERSION:
        wanted = ".".join(map(str, MIN_AIRFLOW_VERSION))
        raise ImportError(
            f"airflow-provider-instasent needs Apache Airflow >={wanted}; "
            f"this environment has {version}: {INSTALL_HINT}"
        )
    return version


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


#: The form's standard fields: the hook reads host, port, password and extra, never the hidden ones.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "login"],
    "relabeling": {"host": "Base URL", "password": "API token", "port": "Port (only if not in the Base URL)"},
    "placeholders": {
        "host": "https://api.instasent.com",
        "extra": '{"project": "my-project", "datasource": "dsapi", "timeout": 60, "max_retries": 5}',
    },
}


def get_provider_info() -> dict[str, Any]:
    """What ``airflow providers list`` shows; checks the Airflow version first (``require_airflow``)."""
    require_airflow()
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
        # Asset URIs instasent://<project>/audience|segment/<uid>|datasource/<uid>/contacts|events
        # (docs/airflow.md): Airflow normalises and checks them with the handler.
        "asset-uris": [
            {
                "schemes": ["instasent"],
                "handler": "airflow_provider_instasent.operators.assets.sanitize_uri",
                "factory": "airflow_provider_instasent.operators.assets.create_asset",
                "to_openlineage_converter": "airflow_provider_instasent.operators.assets.convert_asset_to_openlineage",
            }
        ],
        "connection-types": [
            {
                "connection-type": "instasent",
                "hook-class-name": "airflow_provider_instasent.hooks.instasent.InstasentHook",
                "hook-name": "Instasent",
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
                "conn-fields": _CONN_FIELDS,
            }
        ],
    }
