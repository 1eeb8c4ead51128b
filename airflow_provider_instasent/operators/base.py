"""What every Instasent operator shares: one ``hook``, one error mapping, one resolver.

The Airflow layer is the only place where a connection id becomes an object (docs/architecture.md):
``sql_hook`` turns a ``conn_id`` into a common-sql ``DbApiHook`` and ``object_path``
turns a URL and a ``conn_id`` into an ``ObjectStoragePath``; the engines below receive those.
"""

from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import Any

from .._airflow_compat import AirflowFailException, BaseHook, BaseOperator, default_deferrable
from ..client.errors import InstasentConfigError, InstasentHTTPError, LongWaitError
from ..datatypes import parse_bool
from ..hooks.instasent import InstasentHook
from ..ingest.errors import AutomationsGuardError, IngestError, IngestSchemaError, RejectedRowsError
from ..ingest.sources import SqlSource


def sql_hook(conn_id: str, hook_params: Mapping[str, Any] | None = None) -> Any:
    """The common-sql ``DbApiHook`` of Airflow connection ``conn_id``."""
    hook = BaseHook.get_connection(conn_id).get_hook(hook_params=dict(hook_params) if hook_params else None)
    if not hasattr(hook, "get_conn") or not hasattr(hook, "get_records"):
        raise InstasentConfigError(
            f"connection {conn_id!r} does not give a common-sql DbApiHook ({type(hook).__name__})")
    return hook


def object_path(value: Any, conn_id: str | None = None) -> Any:
    """A URL string (``s3://...``) as an ``ObjectStoragePath`` with ``conn_id``; anything else as it is."""
    if isinstance(value, str) and "://" in value and not value.startswith("file://"):
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(value, conn_id=conn_id) if conn_id else ObjectStoragePath(value)
    return value


def as_bool(value: Any) -> bool:
    """A templated flag: a bool, or a word of ``TRUE_STRINGS``.

    Anything that is not a boolean word is refused, so a typo never turns a dry run into a real one.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return False
    if isinstance(value, str):
        flag = parse_bool(value)
        if flag is None:
            raise InstasentConfigError(f"expected true or false, got {value!r}")
        return flag
    return bool(value)


def push_counts(context: Any, key: str, value: dict[str, Any]) -> None:
    """Push counts to XCom under ``key`` even when the task fails (never data)."""
    ti = context.get("ti") if hasattr(context, "get") else None
    if ti is not None:
        with contextlib.suppress(Exception):  # XCom is a convenience here; the log has the same numbers
            ti.xcom_push(key=key, value=value)


def is_final(exc: BaseException) -> bool:
    """True for errors a retry cannot fix.

    The same input gives the same rejected rows, the same refused automation window and the
    same unknown columns; a 400/401/403/404/422 does not heal by itself either. Lost
    connections, 5xx and 429s stay retryable: the engines are idempotent.
    """
    http = exc if isinstance(exc, InstasentHTTPError) else exc.__cause__  # a failed push keeps its cause
    return isinstance(exc, (IngestSchemaError, RejectedRowsError, AutomationsGuardError)) or (
        isinstance(http, InstasentHTTPError) and 400 <= http.status < 500 and http.status != 429
    )


def fail_fast_if_final(exc: BaseException) -> None:
    """Raise ``AirflowFailException`` (no task retry) from ``exc`` when ``is_final``."""
    if is_final(exc):
        raise AirflowFailException(
            f"{type(exc).__name__}: {exc} (not retried: a retry would fail the same way)") from exc


class RowSource:
    """The input of an operator that pushes rows: exactly one of ``path`` (+ ``path_conn_id``),
    ``sql`` + ``sql_conn_id`` (+ ``sql_parameters``) or ``python_callable`` (+ ``op_args`` /
    ``op_kwargs``). Checked when the DAG is parsed, resolved when the task runs."""

    path: Any
    path_conn_id: str | None
    sql: str | None
    sql_conn_id: str | None
    sql_parameters: Any
    python_callable: Any
    op_args: list[Any]
    op_kwargs: dict[str, Any]

    def _set_source(self, *, path: Any, path_conn_id: str | None, sql: str | None, sql_conn_id: str | None,
                    sql_parameters: Any, python_callable: Any, op_args: Any, op_kwargs: Any) -> None:
        given = [name for name, value in (("path", path), ("sql", sql), ("python_callable", python_callable))
                 if value is not None]
        if len(given) != 1:
            raise ValueError("pass exactly one source: path=, sql= (with sql_conn_id=) or python_callable= "
                             f"(got {', '.join(given) or 'none'})")
        if sql is not None and not sql_conn_id:
            raise ValueError("sql= needs sql_conn_id= (a common-sql connection)")
        if python_callable is not None and not callable(python_callable):
            raise ValueError("python_callable must be callable")
        self.path, self.path_conn_id = path, path_conn_id
        self.sql, self.sql_conn_id, self.sql_parameters = sql, sql_conn_id, sql_parameters
        self.python_callable = python_callable
        self.op_args = list(op_args or [])
        self.op_kwargs = dict(op_kwargs or {})

    def _source(self, db: Any = None) -> Any:
        """The input for the engine (which opens it with its own ``batch_rows`` and ``columns``);
        ``db``: the SQL source's database when the caller resolved it already."""
        if self.path is not None:
            return object_path(self.path, self.path_conn_id)
        if self.sql is not None:
            return SqlSource(self.sql, db if db is not None else sql_hook(str(self.sql_conn_id)),
                             parameters=self.sql_parameters or None)
        return self.python_callable(*self.op_args, **self.op_kwargs)


#: Default ``defer_after``: a wait the API asks for that is longer than this (seconds) defers
#: a deferrable operator instead of sleeping in its worker slot.
DEFAULT_DEFER_AFTER = 60.0


def long_wait_of(exc: BaseException) -> LongWaitError | None:
    """The ``LongWaitError`` behind ``exc`` (itself, its cause or context), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, LongWaitError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class InstasentBaseOperator(BaseOperator):
    """Base of the Instasent operators: the connection arguments, ``hook``, ``failing_fast``,
    and what every run does around its work (docs/airflow.md): deferral on long waits,
    metrics, the counts on the outlets' asset events, OpenLineage.

    Args:
        instasent_conn_id: the Instasent connection (default ``instasent_default``).
        project: overrides the connection's project (also names the default assets).
        datasource: overrides the connection's datasource (also names the default assets).
        deferrable: when the API asks to wait longer than ``defer_after`` seconds (a 429 with
            a long ``Retry-After``, a spent hourly budget), defer on a date-time trigger instead
            of sleeping in the worker slot, then run again (default: Airflow's
            ``[operators] default_deferrable``).
        defer_after: the threshold for ``deferrable``, seconds (default 60).
    """

    #: XCom key of the counts pushed when the task fails (``None``: nothing pushed)
    report_key: str | None = None
    #: the operation's name in metric names (``instasent.<operation>.<measure>``)
    operation: str = "task"

    def __init__(
        self,
        *,
        instasent_conn_id: str = InstasentHook.default_conn_name,
        project: str | None = None,
        datasource: str | None = None,
        deferrable: bool | None = None,
        defer_after: float = DEFAULT_DEFER_AFTER,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if defer_after <= 0:
            raise ValueError("defer_after must be positive (seconds)")
        self.instasent_conn_id = instasent_conn_id
        self.project = project
        self.datasource = datasource
        self.deferrable = default_deferrable() if deferrable is None else bool(deferrable)
        self.defer_after = float(defer_after)
        self._lineage: dict[str, Any] = {}

    def client_kwargs(self) -> dict[str, Any]:
        """Extra ``InstasentClient`` arguments."""
        return {}

    @cached_property
    def hook(self) -> InstasentHook:
        """The Instasent hook (built once per task instance, after templating)."""
        kwargs = self.client_kwargs()
        if self.deferrable and type(self).execute is InstasentBaseOperator.execute:  # it can defer
            kwargs.setdefault("long_wait", self.defer_after)
        return InstasentHook(self.instasent_conn_id, project=self.project or None,
                             datasource=self.datasource or None, client_kwargs=kwargs)

    @contextlib.contextmanager
    def failing_fast(self, context: Any) -> Iterator[None]:
        """Map engine errors: push the counts, and fail without retries when a retry cannot help."""
        try:
            yield
        except (IngestError, InstasentHTTPError) as exc:
            partial = getattr(exc, "report", None)
            if self.report_key and partial is not None and hasattr(partial, "to_dict"):
                push_counts(context, self.report_key, partial.to_dict())
            fail_fast_if_final(exc)
            raise

    # -- one run ----------------------------------------------------------------------------
    def run_instasent(self, context: Any) -> dict[str, Any]:
        """The operator's work; returns the counts for XCom (subclasses implement it)."""
        raise NotImplementedError

    def execute(self, context: Any) -> dict[str, Any]:
        started = time.monotonic()
        try:
            result = self.run_instasent(context)
        except Exception as exc:
            wait = long_wait_of(exc) if self.deferrable else None
            if wait is None:
                raise
            self._defer_for(context, wait)
            raise  # not reached: defer raises TaskDeferred
        self._finish(context, result, time.monotonic() - started)
        return result

    def resume_after_wait(self, context: Any, event: Any = None, deferrals: int = 0) -> dict[str, Any]:
        """Resume after a deferral: run again. What was done before is not redone: ingest is
        idempotent (contact upserts, stable ``_event_id``), a sync skips what its state records
        as accepted; an export starts again from the first page."""
        self.log.info("resuming after a rate-limit wait (deferral %d)", deferrals)
        self._deferrals = deferrals
        return self.execute(context)

    def _defer_for(self, context: Any, wait: LongWaitError) -> None:
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger  # the standard provider (3.0+)

        from .metrics import emit_deferral

        deferrals = getattr(self, "_deferrals", 0) + 1
        moment = datetime.datetime.fromtimestamp(wait.resume_at + 1.0, tz=datetime.UTC)
        self.log.warning("%s; deferring until %s instead of sleeping in a worker slot (deferral %d)",
                         wait, moment.isoformat(), deferrals)
        emit_deferral(self, wait.wait_s)
        self.defer(trigger=DateTimeTrigger(moment=moment), method_name="resume_after_wait",
                   kwargs={"deferrals": deferrals})

    def _finish(self, context: Any, result: Mapping[str, Any], seconds: float) -> None:
        """After a successful run: metrics, the asset events' extra, what lineage reports.
        None of it may fail the task."""
        from .assets import annotate_outlets
        from .metrics import emit_run

        try:
            emit_run(self, result, seconds)
        except Exception:
            self.log.warning("could not emit the Instasent metrics", exc_info=True)
        try:
            extra = self.asset_extra(context, result)
            if extra and annotate_outlets(context, self.outlets or (), extra):
                self.log.info("asset event extra: %s", extra)
        except Exception:
            self.log.warning("could not put the counts on the asset events", exc_info=True)
        self._lineage["result"] = dict(result)

    def asset_extra(self, context: Any, result: Mapping[str, Any]) -> dict[str, Any]:
        """The ``extra`` of this run's asset events: counts and the run id (never data)."""
        run_id = context.get("run_id") if hasattr(context, "get") else None
        return {"run_id": run_id, "rows": result.get("rows")}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage datasets of this run (read by the openlineage provider when installed).
        Returns None, never raises, when lineage cannot be built: lineage never fails a task."""
        try:
            from .lineage import operator_lineage
        except ImportError:
            return None
        try:
            return operator_lineage(self)
        except Exception:
            self.log.warning("could not build the OpenLineage facets", exc_info=True)
            return None
