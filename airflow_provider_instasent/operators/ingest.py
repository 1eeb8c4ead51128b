"""Bulk ingest from a DAG: ``InstasentIngestOperator`` and ``InstasentDeleteContactsOperator``.

Thin wrappers: every decision (validation, chunking, concurrency, rejects, the automations
guard) is made by ``airflow_provider_instasent.ingest``, the engine ``write_contacts`` /
``write_events`` use. See docs/ingest.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..ingest.engine import DEFAULTS, IngestOptions
from ..ingest.errors import IngestSchemaError
from ..ingest.sources import ParquetSource, SqlSource
from .assets import asset_uri, literal
from .base import InstasentBaseOperator, RowSource, as_bool, object_path, sql_hook

if TYPE_CHECKING:
    from airflow.sdk import Context

_KINDS = ("contacts", "events")

#: The engine options the operator forwards, each under its own name (``dry_run`` is stored as
#: ``ingest_dry_run``: ``dry_run`` is a BaseOperator method).
_FORWARDED = (
    "event_type", "columns", "on_invalid", "max_rejected_ratio", "automations", "nulls", "assume_timezone",
    "event_id_fields", "unknown_columns", "rejects_table", "max_in_flight", "batch_rows", "max_request_bytes",
    "preflight", "progress_interval", "consent_fields", "null_policy", "phones", "default_region",
    "sync", "check_contacts", "invalid_values", "verify", "verify_wait_s",
    "create_missing_contacts",
)


class InstasentIngestOperator(RowSource, InstasentBaseOperator):
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
    ``max_request_bytes``, ``preflight``, ``progress_interval``, ``consent_fields``,
    ``null_policy``, ``phones``, ``default_region``; and, so that no event is lost in
    silence, ``sync``, ``check_contacts``, ``contacts_from`` (templated: the ``rejects_path`` of
    the contacts task upstream in the chain, read through ``path_conn_id``), ``invalid_values``,
    ``verify``, ``verify_wait_s``, ``create_missing_contacts``.

    ``dry_run`` (templated, stored as ``ingest_dry_run``: ``dry_run`` is a BaseOperator method).
    Defaults are the engine's (``DEFAULTS``).
    ``instasent_conn_id``, ``project``, ``datasource``, ``deferrable``, ``defer_after``: see
    ``InstasentBaseOperator``.

    Assets (docs/airflow.md): when ``project`` and ``datasource`` are given (not templated) and
    no ``outlets`` are, the outlet is ``instasent://<project>/datasource/<datasource>/<kind>``;
    the counts go on the ``extra`` of every asset outlet's event.

    Returns (XCom) the report's counts (``IngestReport.to_dict()``), never the data; when the
    run fails the same counts are pushed under the key ``ingest_report`` before raising.
    """

    template_fields: Sequence[str] = (
        "path", "sql", "sql_parameters", "event_type", "columns", "rejects_path", "rejects_table", "project",
        "datasource", "op_args", "op_kwargs", "ingest_dry_run", "contacts_from",
    )
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql", "columns": "json", "sql_parameters": "json", "op_kwargs": "json"}
    ui_color = "#fde8d7"
    report_key = "ingest_report"
    operation = "ingest"

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
        on_invalid: str = DEFAULTS["on_invalid"],
        max_rejected_ratio: float | None = DEFAULTS["max_rejected_ratio"],
        dry_run: bool = DEFAULTS["dry_run"],
        automations: str = DEFAULTS["automations"],
        nulls: str = DEFAULTS["nulls"],
        assume_timezone: str | None = DEFAULTS["assume_timezone"],
        event_id_fields: Sequence[str] | None = DEFAULTS["event_id_fields"],
        unknown_columns: str = DEFAULTS["unknown_columns"],
        rejects_path: Any = None,
        rejects_table: str | None = None,
        rejects_conn_id: str | None = None,
        max_in_flight: int = DEFAULTS["max_in_flight"],
        batch_rows: int = DEFAULTS["batch_rows"],
        max_request_bytes: int = DEFAULTS["max_request_bytes"],
        preflight: bool | None = DEFAULTS["preflight"],
        progress_interval: float = DEFAULTS["progress_interval"],
        consent_fields: Sequence[str] | None = DEFAULTS["consent_fields"],
        null_policy: Mapping[str, str] | None = DEFAULTS["null_policy"],
        phones: str = DEFAULTS["phones"],
        default_region: str | None = DEFAULTS["default_region"],
        sync: bool = DEFAULTS["sync"],
        check_contacts: bool = DEFAULTS["check_contacts"],
        contacts_from: Any = None,
        invalid_values: str = DEFAULTS["invalid_values"],
        verify: bool = DEFAULTS["verify"],
        verify_wait_s: float = DEFAULTS["verify_wait_s"],
        create_missing_contacts: bool = DEFAULTS["create_missing_contacts"],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if kind not in _KINDS:
            raise ValueError(f"kind must be 'contacts' or 'events', got {kind!r}")
        self._set_source(path=path, path_conn_id=path_conn_id, sql=sql, sql_conn_id=sql_conn_id,
                         sql_parameters=sql_parameters, python_callable=python_callable, op_args=op_args,
                         op_kwargs=op_kwargs)
        if rejects_table and not rejects_conn_id:
            raise ValueError("rejects_table= needs rejects_conn_id= (a common-sql connection)")
        self.kind = kind
        self.event_type = event_type
        self.columns = dict(columns) if columns else None
        self.on_invalid = on_invalid
        self.max_rejected_ratio = max_rejected_ratio
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
        self.consent_fields = list(consent_fields) if consent_fields else None
        self.null_policy = dict(null_policy) if null_policy else None
        self.phones = phones
        self.default_region = default_region
        self.sync = sync
        self.check_contacts = check_contacts
        self.contacts_from = contacts_from
        self.invalid_values = invalid_values
        self.verify = verify
        self.verify_wait_s = verify_wait_s
        self.create_missing_contacts = create_missing_contacts
        # fail at parse time on option values that templating cannot change
        self._options(parse=True)
        set_default_datasource_outlet(self)

    def _options(self, *, parse: bool = False) -> dict[str, Any]:
        """The engine options, checked by ``IngestOptions`` (at parse time, then after templating)."""
        options: dict[str, Any] = {name: getattr(self, name) for name in _FORWARDED}
        options.update(event_type=self.event_type or None, rejects_table=self.rejects_table or None,
                       datasource=self.datasource or None, dry_run=as_bool(self.ingest_dry_run),
                       rejects_path=self.rejects_path or None, contacts_from=self.contacts_from or None,
                       rejects_conn=self.rejects_conn_id if self.rejects_table else None)
        if parse:  # templated values are checked when the task runs
            options.update(dry_run=False, event_type=None)
        IngestOptions(kind=self.kind, **options)  # type: ignore[arg-type]
        if not parse:  # the connection ids become objects here, and only here
            if self.rejects_path:
                options["rejects_path"] = object_path(self.rejects_path, self.path_conn_id)
            if self.contacts_from:
                options["contacts_from"] = object_path(self.contacts_from, self.path_conn_id)
            if self.rejects_table:
                options["rejects_conn"] = sql_hook(str(self.rejects_conn_id))
        return options

    def run_instasent(self, context: Context) -> dict[str, Any]:
        from ..ingest.engine import ingest
        from ..ingest.specs import ProjectSpecs

        options = self._options()
        run_id = context.get("run_id") if hasattr(context, "get") else None
        data = self._source()
        with self.hook.get_conn() as client, self.failing_fast(context):
            # the engine's own first call, made here so that lineage can name the fields
            options["specs"] = ProjectSpecs.load(client, datasource=options.get("datasource"),
                                                 kind=self.kind, event_type=options.get("event_type"))  # type: ignore[arg-type]
            self._lineage.update(project=client.project, datasource=options.get("datasource") or client.datasource,
                                 specs=options["specs"])
            report = ingest(client, self.kind, data, logger=self.log, run_id=run_id, **options)  # type: ignore[arg-type]
        self.log.info("%s", report.summary())
        return report.to_dict()

    def asset_extra(self, context: Any, result: Mapping[str, Any]) -> dict[str, Any]:
        return ingest_extra(context, self.kind, result)


def ingest_extra(context: Any, kind: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """The asset event ``extra`` of a push (ingest or sync): counts and the run id."""
    run_id = context.get("run_id") if hasattr(context, "get") else None
    return {"kind": kind, "rows": result.get("rows"), "accepted": result.get("accepted"),
            "rejects": result.get("rejected"), "dry_run": bool(result.get("dry_run")), "run_id": run_id}


def set_default_datasource_outlet(op: Any) -> None:
    """``instasent://<project>/datasource/<uid>/<kind>`` as ``op``'s outlet, when nothing else is
    declared and both names are known when the DAG is parsed (not templated, not the connection's)."""
    project, datasource = literal(op.project), literal(op.datasource)
    if not op.outlets and project and datasource:
        from airflow.sdk import Asset

        op.outlets = [Asset(asset_uri(project, "datasource", datasource, op.kind))]


class InstasentDeleteContactsOperator(InstasentBaseOperator):
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
    report_key = "ingest_report"
    operation = "delete"

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
        max_in_flight: int = DEFAULTS["max_in_flight"],
        progress_interval: float = DEFAULTS["progress_interval"],
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

    def _ids(self) -> Any:
        if self.user_ids is not None:
            if isinstance(self.user_ids, str):
                return [p for p in re.split(r"[\s,]+", self.user_ids) if p]
            return list(self.user_ids)
        if self.sql is not None:
            return SqlSource(self.sql, sql_hook(str(self.sql_conn_id)), parameters=self.sql_parameters or None)
        path = object_path(self.path, None)
        if isinstance(path, str) and path.lower().endswith((".txt", ".ids", ".lst", ".csv")):
            return path
        return ParquetSource(path)

    def run_instasent(self, context: Context) -> dict[str, Any]:
        from ..ingest.delete import delete_contacts

        if not self.datasource and self.datasource is not None:
            raise IngestSchemaError("datasource must not be empty")
        with self.hook.get_conn() as client, self.failing_fast(context):
            report = delete_contacts(client, self._ids(), max_in_flight=self.max_in_flight,
                                     datasource=self.datasource, missing_ok=self.missing_ok,
                                     dry_run=as_bool(self.ingest_dry_run), column=self.column,
                                     progress_interval=self.progress_interval, logger=self.log)
        return report.to_dict()
