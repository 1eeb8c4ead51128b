"""``InstasentHook``: adapts an Airflow Connection to an :class:`InstasentClient`.

Connection fields: host = base URL (default ``https://api.instasent.com``), password = API
token, extra ``project``, ``datasource`` (default ``dsapi``), ``timeout``, ``max_retries``,
``verify`` (true/false/CA-bundle path). The token is never logged and never part of an
exception message.
"""

from __future__ import annotations

from typing import Any

from .._airflow_compat import BaseHook
from ..client import InstasentClient, InstasentError
from ..client.endpoints import DEFAULT_BASE_URL, DEFAULT_DATASOURCE
from ..datatypes import parse_bool


def _as_bool_or_path(value: Any) -> bool | str:
    """``verify``: true when unset, a boolean word, or else the path of a CA bundle."""
    if value is None or value == "":
        return True
    flag = parse_bool(value)
    return str(value).strip() if flag is None else flag


class InstasentHook(BaseHook):
    """Builds an :class:`InstasentClient` from an Airflow Connection of type ``instasent``.

    Args:
        instasent_conn_id: the connection id (default ``instasent_default``).
        project: overrides the connection's ``project`` extra.
        datasource: overrides the connection's ``datasource`` extra.
        client_kwargs: extra keyword arguments for :class:`InstasentClient` (e.g. ``pool_size``).
    """

    conn_name_attr = "instasent_conn_id"
    default_conn_name = "instasent_default"
    conn_type = "instasent"
    hook_name = "Instasent"

    def __init__(
        self,
        instasent_conn_id: str = default_conn_name,
        *,
        project: str | None = None,
        datasource: str | None = None,
        client_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.instasent_conn_id = instasent_conn_id
        self._project = project
        self._datasource = datasource
        self._client_kwargs = dict(client_kwargs or {})

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, object]:
        """Connection form for Airflow < 3.2 (3.2+ reads the declarative fields in provider info)."""
        return {
            "hidden_fields": ["schema", "port", "login"],
            "relabeling": {"host": "Base URL", "password": "API token"},
            "placeholders": {
                "host": "https://api.instasent.com",
                "extra": '{"project": "my-project", "datasource": "dsapi", "timeout": 60, "max_retries": 5}',
            },
        }

    def client_config(self) -> dict[str, Any]:
        """The keyword arguments for :class:`InstasentClient` (the token included: never log this)."""
        conn = self.get_connection(self.instasent_conn_id)
        extra = conn.extra_dejson or {}
        host = (conn.host or "").strip() or DEFAULT_BASE_URL
        if not host.startswith(("http://", "https://")):
            scheme = "http" if conn.schema == "http" or host.startswith(("127.", "localhost")) else "https"
            host = f"{scheme}://{host}"
            if conn.port:
                host = f"{host}:{conn.port}"
        token = conn.password or extra.get("token")
        if not token:
            raise InstasentError(
                f"connection {self.instasent_conn_id!r} has no API token: put it in the password field"
            )
        config: dict[str, Any] = {
            "token": token,
            "base_url": host,
            "project": self._project or extra.get("project") or conn.schema or None,
            "datasource": self._datasource or extra.get("datasource") or DEFAULT_DATASOURCE,
            "verify": _as_bool_or_path(extra.get("verify")),
        }
        if extra.get("timeout") not in (None, ""):
            config["timeout"] = (10.0, float(extra["timeout"]))
        if extra.get("max_retries") not in (None, ""):
            config["max_retries"] = int(extra["max_retries"])
        config.update(self._client_kwargs)
        return config

    def get_conn(self) -> InstasentClient:
        """A new client configured from the connection (callers should close it)."""
        return InstasentClient(**self.client_config())

    def test_connection(self) -> tuple[bool, str]:
        """Probe ``GET /v1/`` (or ``GET /stream`` for a datasource token) and report the scopes."""
        try:
            with self.get_conn() as client:
                try:
                    info = client.get_token_info()
                    scopes = (info.get("metadata") or {}).get("scopes") or []
                    projects = [p.get("uid") for p in (info.get("entity") or {}).get("projects") or []]
                    where = f"projects {', '.join(str(p) for p in projects)}" if projects else "no project"
                except InstasentError:
                    stream = client.get_stream()
                    scopes = (stream.get("token") or {}).get("scopes") or []
                    where = f"datasource {client.datasource}"
            return True, f"Connected to Instasent ({where}); token scopes: {', '.join(scopes) or 'none'}"
        except Exception as exc:  # report every failure as a message, never raise
            return False, str(exc)
