"""Stateful sync from a DAG: ``InstasentSyncOperator`` (docs/sync.md).

A thin wrapper around `airflow_provider_instasent.sync.sync_contacts` /
`airflow_provider_instasent.sync.sync_events`: this module only resolves connection ids
(through `base.sql_hook` / `base.object_path`) and pushes counts to XCom.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._airflow_compat import AirflowFailException
from ..client.errors import InstasentError
from ..sync.errors import SyncGuardrailError
from .base import InstasentBaseOperator, RowSource, as_bool, sql_hook
from .ingest import ingest_extra, set_default_datasource_outlet

if TYPE_CHECKING:
    from airflow.sdk import Context

_KINDS = ("contacts", "events")


class InstasentSyncOperator(RowSource, InstasentBaseOperator):
    """Send only what changed since the last accepted run; remember each row's outcome.

    Exactly one source: ``path`` (+ ``path_conn_id``), ``sql`` + ``sql_conn_id`` (+
    ``sql_parameters``), or ``python_callable`` (+ ``op_args`` / ``op_kwargs``), as in
    `ingest.InstasentIngestOperator`.

    Where the state lives: ``state_conn_id`` (any common-sql connection); else, for a SQL
    source, the source's own database (next to the model); else ``state_path``, a DuckDB file.

    Sync options: ``sync_id`` (required), ``on_removed``, ``max_removals``, ``max_change_ratio``,
    ``min_rows`` (contacts), ``key``, ``dry_run`` (templated; stored as ``sync_dry_run``),
    ``retry_rejected``, ``max_attempts``, ``retention_days``. ``event_type`` and ``columns`` are
    templated; every other ingest option (docs/ingest.md) goes in ``ingest_options``.

    ``instasent_conn_id``, ``project``, ``datasource``, ``deferrable``, ``defer_after``: see
    ``InstasentBaseOperator``; the default outlet is the ingest operator's (docs/airflow.md).

    Returns (XCom) ``SyncReport.to_dict()``: counts only, never data; the same counts are pushed
    under ``sync_report`` when the run fails. A guardrail refusal fails the task without retries.
    """

    template_fields: Sequence[str] = (
        "sync_id", "path", "sql", "sql_parameters", "event_type", "columns", "state_path", "project",
        "datasource", "op_args", "op_kwargs", "sync_dry_run",
    )
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql", "columns": "json", "sql_parameters": "json", "op_kwargs": "json"}
    ui_color = "#fde8d7"
    report_key = "sync_report"
    operation = "sync"

    def __init__(
        self,
        *,
        kind: str,
        sync_id: str,
        path: Any = None,
        path_conn_id: str | None = None,
        sql: str | None = None,
        sql_conn_id: str | None = None,
        sql_parameters: Any = None,
        python_callable: Callable[..., Any] | None = None,
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        state_conn_id: str | None = None,
        state_path: str | None = None,
        event_type: str | None = None,
        columns: Mapping[str, str | None] | None = None,
        on_removed: str = "ignore",
        max_removals: float | None = None,
        max_change_ratio: float | None = None,
        min_rows: int | None = None,
        key: str | None = None,
        dry_run: bool = False,
        retry_rejected: bool = False,
        max_attempts: int | None = None,
        retention_days: float | None = None,
        ingest_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if kind not in _KINDS:
            raise ValueError(f"kind must be 'contacts' or 'events', got {kind!r}")
        self._set_source(path=path, path_conn_id=path_conn_id, sql=sql, sql_conn_id=sql_conn_id,
                         sql_parameters=sql_parameters, python_callable=python_callable, op_args=op_args,
                         op_kwargs=op_kwargs)
        if not state_conn_id and sql is None and not state_path:
            raise ValueError("where does the sync state live? pass state_conn_id= (a common-sql connection) or "
                             "state_path= (a DuckDB file); with a sql= source it defaults to sql_conn_id")
        if kind == "events" and (on_removed != "ignore" or max_removals is not None or max_change_ratio is not None):
            raise ValueError("on_removed, max_removals and max_change_ratio apply to contacts only")
        bad = {"dry_run", "on_outcome", "specs", "logger"} & set(ingest_options or {})
        if bad:
            raise ValueError(f"ingest_options may not set {', '.join(sorted(bad))}")
        self.kind = kind
        self.sync_id = sync_id
        self.state_conn_id = state_conn_id
        self.state_path = state_path
        self.event_type = event_type
        self.columns = dict(columns) if columns else None
        self.on_removed = on_removed
        self.max_removals = max_removals
        self.max_change_ratio = max_change_ratio
        self.min_rows = min_rows
        self.key = key
        self.sync_dry_run = dry_run
        self.retry_rejected = retry_rejected
        self.max_attempts = max_attempts
        self.retention_days = retention_days
        self.ingest_options = dict(ingest_options or {})
        set_default_datasource_outlet(self)

    def _state(self, source_hook: Any) -> Any:
        if self.state_conn_id:
            return sql_hook(self.state_conn_id)
        if source_hook is not None:
            return source_hook  # state next to the model
        return str(self.state_path)

    def run_instasent(self, context: Context) -> dict[str, Any]:
        from ..ingest.specs import ProjectSpecs
        from ..sync import sync_contacts, sync_events

        source_hook = sql_hook(str(self.sql_conn_id)) if self.sql is not None else None
        data = self._source(source_hook)
        options: dict[str, Any] = dict(self.ingest_options)
        options.update(columns=self.columns, datasource=self.datasource or None, logger=self.log,
                       dry_run=as_bool(self.sync_dry_run), retry_rejected=self.retry_rejected,
                       max_attempts=self.max_attempts, retention_days=self.retention_days,
                       sync_id=self.sync_id, state=self._state(source_hook))
        with self.hook.get_conn() as client, self.failing_fast(context):
            # the engine's own first call, made here so that lineage can name the fields; when it
            # fails, the engine makes it again and records the failed run in its state
            with contextlib.suppress(InstasentError):
                options["specs"] = ProjectSpecs.load(client, datasource=options["datasource"], kind=self.kind,  # type: ignore[arg-type]
                                                     event_type=self.event_type or None)
            self._lineage.update(project=client.project, datasource=options["datasource"] or client.datasource,
                                 specs=options.get("specs"))
            try:
                if self.kind == "contacts":
                    report = sync_contacts(client, data, on_removed=self.on_removed,  # type: ignore[arg-type]
                                           max_removals=self.max_removals, max_change_ratio=self.max_change_ratio,
                                           min_rows=self.min_rows, key=self.key, **options)
                else:
                    report = sync_events(client, data, event_type=self.event_type or None, min_rows=self.min_rows,
                                         **options)
            except SyncGuardrailError as exc:
                self._push_partial(context, exc.report)
                raise AirflowFailException(f"{exc} (not retried: the same model is refused the same way)") from exc
            except Exception as exc:
                self._push_partial(context, getattr(exc, "sync_report", None))
                raise
        self.log.info("%s", report.summary())
        return report.to_dict()

    def asset_extra(self, context: Any, result: Mapping[str, Any]) -> dict[str, Any]:
        extra = ingest_extra(context, self.kind, result)
        extra.update(sync_id=result.get("sync_id"), added=result.get("added"), changed=result.get("changed"),
                     removed=result.get("removed"))
        return extra

    def _push_partial(self, context: Any, report: Any) -> None:
        from .base import push_counts

        if report is not None and hasattr(report, "to_dict"):
            push_counts(context, self.report_key or "sync_report", report.to_dict())
