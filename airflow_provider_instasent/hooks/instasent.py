"""``InstasentHook``: adapts an Airflow Connection to an ``InstasentClient``.

Connection fields: host = base URL (default ``https://api.instasent.com``), port (only when
the base URL has none), password = API token, extra ``project``, ``datasource`` (default
``dsapi``), ``timeout``, ``max_retries``, ``verify`` (true/false/CA-bundle path). The token
is never logged and never part of an exception message.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

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
    """Builds an ``InstasentClient`` from an Airflow Connection of type ``instasent``.

    Args:
        instasent_conn_id: the connection id (default ``instasent_default``).
        project: overrides the connection's ``project`` extra.
        datasource: overrides the connection's ``datasource`` extra.
        client_kwargs: extra keyword arguments for ``InstasentClient`` (e.g. ``pool_size``).
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
        #: the clients ``get_conn`` built (their request counters feed the operators' metrics)
        self.clients: list[InstasentClient] = []

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, object]:
        """Connection form for Airflow < 3.2 (3.2+ reads the declarative fields in provider info:
        ``get_provider_info.UI_FIELD_BEHAVIOUR``, the same form)."""
        from ..get_provider_info import UI_FIELD_BEHAVIOUR

        return {key.replace("-", "_"): value for key, value in UI_FIELD_BEHAVIOUR.items()}

    def client_config(self) -> dict[str, Any]:
        """The keyword arguments for ``InstasentClient`` (the token included: never log this)."""
        conn = self.get_connection(self.instasent_conn_id)
        extra = conn.extra_dejson or {}
        # Only the fields the form shows are read (host, port, password, extra): the hidden
        # ones (schema, login) are ignored, so a value left in them never changes a run.
        host = (conn.host or "").strip() or DEFAULT_BASE_URL
        if not host.startswith(("http://", "https://")):  # the URI form: the host without its scheme
            scheme = "http" if host.startswith(("127.", "localhost")) else "https"
            host = f"{scheme}://{host}"
        parts = urlsplit(host)
        if conn.port and not parts.port:
            host = parts._replace(netloc=f"{parts.netloc}:{int(conn.port)}").geturl()
        token = conn.password or extra.get("token")
        if not token:
            raise InstasentError(
                f"connection {self.instasent_conn_id!r} has no API token: put it in the password field"
            )
        config: dict[str, Any] = {
            "token": token,
            "base_url": host,
            "project": self._project or extra.get("project") or None,
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
        client = InstasentClient(**self.client_config())
        self.clients.append(client)
        return client

    def test_connection(self) -> tuple[bool, str]:
        """Check what a run will need, and report what the token may do.

        Passes only when the token is valid, the configured project exists and is visible to
        it, and the configured datasource exists in that project (not checked, and said so,
        when the token lacks ``PROJECT_DATASOURCE_READ``). The message names the project and
        datasource, the token's scopes and the audience data level it will see (``full``,
        ``basic`` or ``default``: ``privacy_level``).
        A datasource token (``GET /stream`` only) is checked against its own datasource.
        """
        try:
            with self.get_conn() as client:
                return self._check(client)
        except Exception as exc:  # report every failure as a message, never raise
            return False, str(exc)

    @staticmethod
    def _check(client: InstasentClient) -> tuple[bool, str]:
        from ..client.errors import NotFoundError, PermissionDeniedError
        from ..export.engine import PRIVACY_SCOPES, privacy_level

        project, datasource = client.project, client.datasource
        try:
            info = client.get_token_info()
        except PermissionDeniedError:  # a datasource token: /stream and /stats of its datasource only
            if not project:
                return False, "the connection has no project: set the extra 'project' (the project UID)"
            try:
                stream = client.get_stream()
            except NotFoundError as exc:
                return False, (f"{exc.api_message or exc}: check the connection's project ({project!r}) and "
                               f"datasource ({datasource!r}) UIDs")
            except PermissionDeniedError as exc:
                return False, (f"this datasource token cannot use datasource {datasource!r} of project "
                               f"{project!r}: {exc.api_message or exc}")
            scopes = (stream.get("token") or {}).get("scopes") or []
            return True, (f"Connected to Instasent with a datasource token: datasource {datasource} of project "
                          f"{project}; token scopes: {', '.join(scopes) or 'none'}; audience data: none "
                          "(a datasource token only writes to its datasource)")

        scopes = list((info.get("metadata") or {}).get("scopes") or [])
        visible = [str(p.get("uid")) for p in (info.get("entity") or {}).get("projects") or [] if p.get("uid")]
        sees = ", ".join(visible) or "none"
        if not project:
            return False, f"the connection has no project: set the extra 'project' (this token sees: {sees})"
        if visible and project not in visible:
            return False, f"project {project!r} is not visible to this token (it sees: {sees}): check the project UID"
        try:
            name = client.get_project().get("entity", {}).get("name")
        except NotFoundError as exc:
            return False, f"project {project!r} not found (this token sees: {sees}; API: {exc.api_message or exc})"
        where = f"project {project}" + (f" ({name})" if name else "")
        try:
            ds = client.get_datasource(datasource)
            where += f", datasource {datasource}" + (f" ({ds['name']})" if ds.get("name") else "")
        except NotFoundError as exc:
            return False, (f"datasource {datasource!r} not found in project {project!r}: check the datasource UID "
                           f"(API: {exc.api_message or exc})")
        except PermissionDeniedError:
            where += f", datasource {datasource} not checked (the token lacks PROJECT_DATASOURCE_READ)"
        level = privacy_level(scopes)
        granted = next((s for s in PRIVACY_SCOPES if s in scopes), None)
        why = (f"from {granted}; the organization's plan can lower it" if granted
               else "no PROJECT_AUDIENCE_DATA_* scope: name and user id only")
        return True, (f"Connected to Instasent: {where}; token scopes: {', '.join(scopes) or 'none'}; "
                      f"audience data level: {level} ({why})")
