"""Bulk ingest from a DAG: ``InstasentIngestOperator`` and ``InstasentDeleteContactsOperator``.

Thin wrappers: every decision (validation, chunking, concurrency, rejects, the automations
guard) is made by :mod:`airflow_provider_instasent.ingest`, the engine ``write_contacts`` /
``write_events`` use. See docs/ingest.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from ..client.errors import InstasentHTTPError
from ..hooks.instasent import InstasentHook
from ..ingest.engine import IngestOptions
from ..ingest.errors import IngestError, IngestSchemaError
from ..ingest.sources import DEFAULT_BATCH_ROWS, ParquetSource, SqlSource

if TYPE_CHECKING:
    from airflow.sdk import Context

_KINDS = ("contacts", "events")


def _push_report(context: Context | Mapping[str, Any], value: dict[str, Any]) -> None:
    """Push the counts under ``ingest_report`` even when the task fails (no data, counts only)."""
    ti = context.get("ti") if hasattr(context, "get") else None
    if ti is not None:
        try:
            ti.xcom_push(key="ingest_report", value=value)
        except Exception:  # XCom is a convenience here; the log has the same numbers
            pass


def _object_path(value: Any, conn_id: str | None) -> Any:
    """``s3://...`` strings become ObjectStoragePath (with ``conn_id``); others stay as they are."""
    if isinstance(value, str) and "://" in value and not value.startswith("file://"):
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(value, conn_id=conn_id) if conn_id else ObjectStoragePath(value)
    return value


class InstasentIngestOperator(BaseOperator):
    """Validate and push contacts or events into an Instasent datasource.

    Exactly one source:

    * ``path``: a Parquet file, glob or directory; local, ``file://``, or any Airflow object
      storage URL (``s3://bucket/orders/*.parquet`` with ``path_conn_id``) or
      ``ObjectStoragePath``;
    * ``sql`` + ``sql_conn_id``: a query on any common-sql connection, streamed with a
      server-side cursor on PostgreSQL (the reverse-ETL case); ``sql_parameters`` bind values;
    * ``python_callable`` (+ ``op_args`` / ``op_kwargs``): returns a DataFrame, Arrow data, a
      Parquet path, or an iterable of frames.

    Every other option is the engine's (docs/ingest.md): ``event_type``, ``columns``,
    ``on_invalid``, ``max_rejected_ratio``, ``dry_run``, ``automations``, ``nulls``,
    ``assume_timezone``, ``event_id_fields``, ``unknown_columns``, ``rejects_path``,
    ``rejects_table`` / ``rejects_conn_id``, ``max_in_flight``, ``batch_rows``,
    ``max_request_bytes``, ``preflight``, ``progress_interval``.

    ``dry_run`` (templated, stored as ``ingest_dry_run``: ``dry_run`` is a BaseOperator method).

    Returns (XCom) the report's counts (``IngestReport.to_dict()``), never the data; when the
    run fails the same counts are pushed under the key ``ingest_report`` before raising.
    """

    template_fields: Sequence[str] = (
        "path", "sql", "sql_parameters", "event_type", "columns", "rejects_path", "rejects_table", "project",
        "datasource", "op_args", "op_kwargs", "ingest_dry_run",
    )
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql", "columns": "json", "sql_parameters": "json", "op_kwargs": "json"}
    ui_color = "#fde8d7"

    def __init__(
        self,
        *,
        kind: str,
        path: Any = None,
        path_conn_id: str | None = None,
        sql: str | None = None,
        sql_conn_id: str | None = None,
        sql_parameters: Any = None,
        python_callable: Callable[..., Any] | None = None,
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        event_type: str | None = None,
        columns: Mapping[str, str | None] | None = None,
        on_invalid: str = "fail",
        max_rejected_ratio: float | None = None,
        dry_run: bool = False,
        automations: str = "allow",
        nulls: str = "omit",
        assume_timezone: str | None = None,
        event_id_fields: Sequence[str] | None = None,
        unknown_columns: str = "error",
        rejects_path: Any = None,
        rejects_table: str | None = None,
        rejects_conn_id: str | None = None,
        max_in_flight: int = 16,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        max_request_bytes: int | None = None,
        preflight: bool | None = None,
        progress_interval: float = 10.0,
        instasent_conn_id: str = InstasentHook.default_conn_name,
        project: str | None = None,
        datasource: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if kind not in _KINDS:
            raise ValueError(f"kind must be 'contacts' or 'events', got {kind!r}")
        given = [name for name, value in (("path", path), ("sql", sql), ("python_callable", python_callable))
                 if value is not None]
        if len(given) != 1:
            raise ValueError("pass exactly one source: path=, sql= (with sql_conn_id=) or python_callable= "
                             f"(got {', '.join(given) or 'none'})")
        if sql is not None and not sql_conn_id:
            raise ValueError("sql= needs sql_conn_id= (a common-sql connection)")
        if python_callable is not None and not callable(python_callable):
            raise ValueError("python_callable must be callable")
        self.kind = kind
        self.path = path
        self.path_conn_id = path_conn_id
        self.sql = sql
        self.sql_conn_id = sql_conn_id
        self.sql_parameters = sql_parameters
        self.python_callable = python_callable
        self.op_args = list(op_args or [])
        self.op_kwargs = dict(op_kwargs or {})
        self.event_type = event_type
        self.columns = dict(columns) if columns else None
        self.on_invalid = on_invalid
        self.max_rejected_ratio = max_rejected_ratio
        # ``dry_run`` would shadow BaseOperator.dry_run(); templated under this name
        self.ingest_dry_run = dry_run
        self.automations = automations
        self.nulls = nulls
        self.assume_timezone = assume_timezone
        self.event_id_fields = list(event_id_fields) if event_id_fields else None
        self.unknown_columns = unknown_columns
        self.rejects_path = rejects_path
        self.rejects_table = rejects_table
        self.rejects_conn_id = rejects_conn_id
        self.max_in_flight = max_in_flight
        self.batch_rows = batch_rows
        self.max_request_bytes = max_request_bytes
        self.preflight = preflight
        self.progress_interval = progress_interval
        self.instasent_conn_id = instasent_conn_id
        self.project = project
        self.datasource = datasource
        # fail at parse time on option values that templating cannot change
        self._options(parse=True)

    def _options(self, *, parse: bool = False) -> dict[str, Any]:
        options: dict[str, Any] = {
            "event_type": self.event_type or None,
            "columns": self.columns,
            "on_invalid": self.on_invalid,
            "max_rejected_ratio": self.max_rejected_ratio,
            "dry_run": _as_bool(self.ingest_dry_run),
            "automations": self.automations,
            "nulls": self.nulls,
            "assume_timezone": self.assume_timezone,
            "event_id_fields": self.event_id_fields,
            "unknown_columns": self.unknown_columns,
            "rejects_path": None if not self.rejects_path else (
                self.rejects_path if parse else _object_path(self.rejects_path, self.path_conn_id)),
            "rejects_table": self.rejects_table or None,
            "rejects_conn_id": self.rejects_conn_id,
            "max_in_flight": self.max_in_flight,
            "batch_rows": self.batch_rows,
            "preflight": self.preflight,
            "progress_interval": self.progress_interval,
            "datasource": self.datasource or None,
        }
        if self.max_request_bytes:
            options["max_request_bytes"] = self.max_request_bytes
        if parse:  # templated values are checked when the task runs
            options.update(dry_run=False, event_type=None)
        IngestOptions(kind=self.kind, **options)  # type: ignore[arg-type]
        return options

    def _source(self) -> Any:
        if self.path is not None:
            return ParquetSource(_object_path(self.path, self.path_conn_id), batch_rows=self.batch_rows,
                                 conn_id=self.path_conn_id,
                                 drop=[k for k, v in (self.columns or {}).items() if v is None])
        if self.sql is not None:
            return SqlSource(self.sql, self.sql_conn_id, parameters=self.sql_parameters or None,
                             batch_rows=self.batch_rows)
        assert self.python_callable is not None
        return self.python_callable(*self.op_args, **self.op_kwargs)

    def execute(self, context: Context) -> dict[str, Any]:
        from ..ingest.engine import ingest

        options = self._options()
        run_id = context.get("run_id") if hasattr(context, "get") else None
        hook = InstasentHook(self.instasent_conn_id, project=self.project, datasource=self.datasource,
                             client_kwargs={"pool_size": max(16, self.max_in_flight)})
        data = self._source()
        with hook.get_conn() as client:
            try:
                report = ingest(client, self.kind, data, logger=self.log, run_id=run_id, **options)  # type: ignore[arg-type]
            except IngestError as exc:
                if exc.report is not None and hasattr(exc.report, "to_dict"):
                    _push_report(context, exc.report.to_dict())
                _fail_fast_if_final(exc)
                raise
            except InstasentHTTPError as exc:
                _fail_fast_if_final(exc)
                raise
        self.log.info("%s", report.summary())
        return report.to_dict()


def _fail_fast_if_final(exc: Exception) -> None:
    """Turn errors that a retry cannot fix into ``AirflowFailException`` (no task retry).

    The same input gives the same rejected rows, the same refused automation window and the
    same unknown columns; a 401/403/404/400 does not heal by itself either. Lost connections,
    5xx and 429s (``RequestFailedError``) stay retryable: the engine is idempotent.
    """
    from .._airflow_compat import AirflowFailException
    from ..ingest.errors import AutomationsGuardError, RejectedRowsError

    http = exc if isinstance(exc, InstasentHTTPError) else exc.__cause__  # a failed push keeps its cause
    final = isinstance(exc, (IngestSchemaError, RejectedRowsError, AutomationsGuardError)) or (
        isinstance(http, InstasentHTTPError) and 400 <= http.status < 500 and http.status != 429
    )
    if final:
        raise AirflowFailException(f"{type(exc).__name__}: {exc} (not retried: a retry would fail the same way)"
                                   ) from exc


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


class InstasentDeleteContactsOperator(BaseOperator):
    """Permanently delete datasource contacts by ``_user_id``.

    Exactly one source of ids: ``user_ids`` (a list, or a string of ids separated by commas,
    spaces or newlines), ``sql`` + ``sql_conn_id`` (first column, or ``column``), or ``path``
    (a text file with one id per line, a CSV file, or Parquet; column ``column`` or
    ``_user_id``). Deleting is idempotent: an id that is already gone counts as ``missing``
    (``missing_ok=False`` makes that an error). ``dry_run`` only counts the ids.

    Returns (XCom): ``{"requested", "deleted", "missing", "failed", "elapsed_s", ...}``.
    """

    template_fields: Sequence[str] = ("user_ids", "sql", "sql_parameters", "path", "project", "datasource")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql"}
    ui_color = "#fde8d7"

    def __init__(
        self,
        *,
        user_ids: Any = None,
        sql: str | None = None,
        sql_conn_id: str | None = None,
        sql_parameters: Any = None,
        path: Any = None,
        column: str | None = None,
        missing_ok: bool = True,
        dry_run: bool = False,
        max_in_flight: int = 16,
        progress_interval: float = 10.0,
        instasent_conn_id: str = InstasentHook.default_conn_name,
        project: str | None = None,
        datasource: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        given = [name for name, value in (("user_ids", user_ids), ("sql", sql), ("path", path)) if value is not None]
        if len(given) != 1:
            raise ValueError(f"pass exactly one of user_ids=, sql= or path= (got {', '.join(given) or 'none'})")
        if sql is not None and not sql_conn_id:
            raise ValueError("sql= needs sql_conn_id=")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.user_ids = user_ids
        self.sql = sql
        self.sql_conn_id = sql_conn_id
        self.sql_parameters = sql_parameters
        self.path = path
        self.column = column
        self.missing_ok = missing_ok
        self.ingest_dry_run = dry_run
        self.max_in_flight = max_in_flight
        self.progress_interval = progress_interval
        self.instasent_conn_id = instasent_conn_id
        self.project = project
        self.datasource = datasource

    def _ids(self) -> Any:
        if self.user_ids is not None:
            if isinstance(self.user_ids, str):
                return [p for p in re.split(r"[\s,]+", self.user_ids) if p]
            return list(self.user_ids)
        if self.sql is not None:
            return SqlSource(self.sql, self.sql_conn_id, parameters=self.sql_parameters or None)
        path = _object_path(self.path, None)
        if isinstance(path, str) and path.lower().endswith((".txt", ".ids", ".lst", ".csv")):
            return path
        return ParquetSource(path)

    def execute(self, context: Context) -> dict[str, Any]:
        from ..ingest.delete import delete_contacts

        if not self.datasource and self.datasource is not None:
            raise IngestSchemaError("datasource must not be empty")
        hook = InstasentHook(self.instasent_conn_id, project=self.project, datasource=self.datasource,
                             client_kwargs={"pool_size": max(16, self.max_in_flight)})
        with hook.get_conn() as client:
            try:
                report = delete_contacts(client, self._ids(), max_in_flight=self.max_in_flight,
                                         datasource=self.datasource, missing_ok=self.missing_ok,
                                         dry_run=_as_bool(self.ingest_dry_run), column=self.column,
                                         progress_interval=self.progress_interval, logger=self.log)
            except IngestError as exc:
                if exc.report is not None and hasattr(exc.report, "to_dict"):
                    _push_report(context, exc.report.to_dict())
                _fail_fast_if_final(exc)
                raise
            except InstasentHTTPError as exc:
                _fail_fast_if_final(exc)
                raise
        return report.to_dict()
