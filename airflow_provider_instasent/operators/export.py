"""Operators exporting the Instasent audience, a segment or events to SQL tables and Parquet.

Both are thin: they build an ``Export`` from an
Instasent connection and hand its batches to a writer of the I/O layer
(``airflow_provider_instasent.io.sql``, ``airflow_provider_instasent.io.parquet``).
The scroll and conversion (fetch thread) overlap with the load (task thread).
With ``incremental=True`` each run after the first reads only what changed since the
watermark stored with the target (``export.incremental``) and merges it in.
They return counts and the target to XCom, never the data. See docs/export.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from ..client.errors import InstasentConfigError
from ..export.engine import DEFAULT_BATCH_SIZE, DEFAULT_PROGRESS_INTERVAL, SOURCES, Export, privacy_level
from ..export.incremental import IncrementalParquet, IncrementalSql, fingerprint, parse_lookback
from ..io.parquet import write_parquet
from ..io.sql import WRITE_DISPOSITIONS, SqlWriter, TableName
from .assets import asset_uri, literal
from .base import InstasentBaseOperator, object_path, sql_hook


class _InstasentExportBase(InstasentBaseOperator):
    """Options shared by the export operators.

    Args:
        source: ``"audience"``, ``"segment"`` or ``"events"``.
        segment: the segment uid (``source="segment"``).
        parameter: the parameter of a parameterised dynamic segment (e.g. ``"pro|business"``).
        filter: a query-filter ``root`` (AudienceQueryFilter; EventQueryFilter for events).
        attributes: only these attribute columns (audience/segment).
        instasent_conn_id: the Instasent connection.
        project: overrides the connection's project.
        datasource: overrides the connection's datasource.
        batch_size: rows per Arrow batch: one SQL load step, one Parquet row group.
        page_size: scroll page size (1..100).
        prefetch_pages: pages the fetch thread may read ahead (default: one batch plus 20).
        progress_interval: seconds between progress log lines (0 disables them).
        total_tolerance: how far the rows read may fall short of ``totalHits`` before the
            export is refused as incomplete (default 0; see ``Export``).
        incremental: after a first full run, read only what changed since the watermark stored
            with the target (contacts by ``_date_updated``, events by their date) and merge it in.
        lookback: how far before the watermark each incremental run reads again (late updates):
            a ``timedelta`` or seconds; default one hour.
        deferrable: defer on a long rate-limit wait (see ``InstasentBaseOperator``); when it
            resumes the export starts again: from the stored watermark with ``incremental=True``,
            from the first page otherwise.
        **kwargs: passed to ``BaseOperator`` (``task_id``...).

    Assets (docs/airflow.md): with ``project`` given (not templated) and no ``inlets``, the
    inlet is ``instasent://<project>/audience`` or ``.../segment/<uid>``; the counts go on the
    ``extra`` of every asset outlet's event.
    """

    template_fields: Sequence[str] = ("source", "segment", "parameter", "filter", "attributes", "project",
                                      "instasent_conn_id")
    template_fields_renderers = {"filter": "json"}
    ui_color = "#e8f4fd"
    operation = "export"

    def __init__(
        self,
        *,
        source: str = "audience",
        segment: str | None = None,
        parameter: str | None = None,
        filter: Mapping[str, Any] | None = None,
        attributes: Sequence[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        page_size: int = 100,
        prefetch_pages: int | None = None,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        total_tolerance: float = 0.0,
        incremental: bool = False,
        lookback: dt.timedelta | float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.total_tolerance = total_tolerance
        self.incremental = incremental
        self.lookback = parse_lookback(lookback)
        self.source = source
        self.segment = segment
        self.parameter = parameter
        self.filter = filter
        self.attributes = attributes
        self.batch_size = batch_size
        self.page_size = page_size
        self.prefetch_pages = prefetch_pages
        self.progress_interval = progress_interval
        project, segment = literal(self.project), literal(self.segment)
        if not self.inlets and project and source in ("audience", "segment"):
            from airflow.sdk import Asset

            if source == "audience":
                self.inlets = [Asset(asset_uri(project, "audience"))]
            elif segment:
                self.inlets = [Asset(asset_uri(project, "segment", segment))]

    def asset_extra(self, context: Any, result: Mapping[str, Any]) -> dict[str, Any]:
        run_id = context.get("run_id") if hasattr(context, "get") else None
        extra = {"source": result.get("source"), "rows": result.get("rows"), "total_hits": result.get("total_hits"),
                 "invalid_values": result.get("invalid_values"), "run_id": run_id}
        if result.get("watermark") is not None:  # incremental: what the next run reads from
            extra["watermark"] = str(result["watermark"])
        return extra

    def _check(self) -> None:
        if self.source not in SOURCES:
            raise InstasentConfigError(f"source must be one of {', '.join(SOURCES)}; got {self.source!r}")

    def _fingerprint(self) -> str:
        """What this export reads (its stored watermark is valid for this only)."""
        return fingerprint(self.source, segment=self.segment or None, parameter=self.parameter or None,
                           filter=self.filter or None, attributes=list(self.attributes) if self.attributes else None)

    def _export(self, client: Any, since: dt.datetime | None = None) -> Export:
        export = Export(
            client,
            self.source,
            segment=self.segment or None,
            parameter=self.parameter or None,
            filter=self.filter or None,
            attributes=list(self.attributes) if self.attributes else None,
            batch_size=self.batch_size,
            page_size=self.page_size,
            prefetch_pages=self.prefetch_pages,
            progress_interval=self.progress_interval,
            total_tolerance=self.total_tolerance,
            logger=self.log,
            since=since,
            track_start=self.incremental,
        )
        self._lineage.update(project=client.project, schema=export.schema)
        if self.source != "events":
            try:
                level = privacy_level(client.token_scopes())
                self.log.info("token data-privacy level: %s (attributes it cannot see are exported as null)",
                              level)
            except Exception:  # informative only; the scroll reports real permission errors
                self.log.debug("could not read the token scopes", exc_info=True)
        return export


class InstasentToSqlOperator(_InstasentExportBase):
    """Export the audience, a segment's contacts or events into a table of any common-sql database.

    Takes every argument of the shared export options (``source``, ``segment``, ``parameter``,
    ``filter``, ``attributes``, ``instasent_conn_id``, ``project``, ``batch_size``,
    ``page_size``, ``prefetch_pages``, ``progress_interval``), plus the ones below.

    Args:
        sql_conn_id: an Airflow connection whose hook is a common-sql ``DbApiHook``
            (postgres, duckdb, sqlite, mysql...).
        table: ``table`` or ``schema.table`` (letters, digits, underscores).
        write_disposition: ``"replace"`` (atomic swap), ``"append"`` or ``"merge"`` (upsert on
            ``audience_id``; ``_event_id`` for events). Default ``"replace"``, and ``"merge"``
            (the only one allowed) with ``incremental=True``.
        hook_params: extra keyword arguments for the SQL hook.
        **kwargs: the shared export options and ``BaseOperator`` arguments.

    Returns (XCom): ``{"source", "rows", "rows_read", "pages", "batches", "total_hits",
    "invalid_values", "invalid_by_column", "seconds", "rows_per_second", "since",
    "server_started", "target": {"conn_id", "table", "dialect", "write_disposition"}}``, plus
    ``"watermark"`` (the one stored) with ``incremental=True``.
    """

    template_fields: Sequence[str] = (*_InstasentExportBase.template_fields, "sql_conn_id", "table",
                                      "write_disposition")

    def __init__(
        self,
        *,
        sql_conn_id: str,
        table: str,
        write_disposition: str | None = None,
        hook_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sql_conn_id = sql_conn_id
        self.table = table
        self.write_disposition = write_disposition or ("merge" if self.incremental else "replace")
        self.hook_params = dict(hook_params or {})

    def _check(self) -> None:
        super()._check()
        if self.write_disposition not in WRITE_DISPOSITIONS:
            raise InstasentConfigError(
                f"write_disposition must be one of {', '.join(WRITE_DISPOSITIONS)}; got {self.write_disposition!r}"
            )
        if self.incremental and self.write_disposition != "merge":
            raise InstasentConfigError(
                f"incremental=True merges what changed into the table: write_disposition must be 'merge' (or "
                f"left out), not {self.write_disposition!r} (replace would keep only the changes, append would "
                f"repeat the rows of the lookback window)")
        TableName.parse(self.table)

    def get_sql_hook(self) -> Any:
        """The common-sql hook of ``sql_conn_id`` (with ``hook_params``)."""
        return sql_hook(self.sql_conn_id, self.hook_params)

    def run_instasent(self, context: Any) -> dict[str, Any]:
        self._check()
        target = self.get_sql_hook()
        self._lineage.update(sql_hook=target)
        with self.hook.get_conn() as client, self.failing_fast(context):
            if self.incremental:
                target_table = IncrementalSql(target, self.table, fingerprint=self._fingerprint(),
                                              lookback=self.lookback, logger=self.log)
                export = self._export(client, target_table.since())
                self.log.info("exporting %s into %s incrementally (merge)", export.describe_target(), self.table)
                result = target_table.write(export, run_id=_run_id(context))
            else:
                export = self._export(client)
                writer = SqlWriter(target, self.table, export.schema, write_disposition=self.write_disposition,
                                   key=export.key, logger=self.log)
                self.log.info("exporting %s into %s (%s, %s)", export.describe_target(), writer.target,
                              writer.dialect, self.write_disposition)
                result = writer.write(export.batches())
        out = export.stats.as_dict()
        if self.incremental:
            out["watermark"] = out["server_started"]
        out["target"] = {"conn_id": self.sql_conn_id, "table": result.table, "dialect": result.dialect,
                         "write_disposition": result.write_disposition}
        return out


class InstasentToParquetOperator(_InstasentExportBase):
    """Export the audience, a segment's contacts or events to one Parquet file.

    Takes every argument of the shared export options (as ``InstasentToSqlOperator``),
    plus the ones below. Each batch (``batch_size`` rows) becomes one Parquet row group.

    Args:
        path: a local path, a URL (``s3://bucket/key.parquet``: opened as an Airflow
            ``ObjectStoragePath`` with ``object_storage_conn_id``) or an ``ObjectStoragePath``.
        object_storage_conn_id: the connection for a URL ``path``.
        compression: Parquet codec (default ``zstd``).
        **kwargs: the shared export options and ``BaseOperator`` arguments.

    With ``incremental=True`` the file is merged into (an upsert on the merge key: the new rows
    replace those with the same key, in a new file published atomically) and its watermark is
    kept in the file's own metadata (``instasent.watermark``), published with it. Give it a
    fixed ``path``: a templated one (``{{ ds }}``) is a new file, and a full run, each time.

    Returns (XCom): the export counts plus ``"target": {"path", "row_groups", "bytes"}`` (and
    ``"watermark"`` with ``incremental=True``).
    """

    template_fields: Sequence[str] = (*_InstasentExportBase.template_fields, "path", "object_storage_conn_id")

    def __init__(
        self,
        *,
        path: Any,
        object_storage_conn_id: str | None = None,
        compression: str = "zstd",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.object_storage_conn_id = object_storage_conn_id
        self.compression = compression
        if not self.outlets and literal(path):
            from airflow.sdk import Asset

            self.outlets = [Asset(path_uri(str(path)))]

    def run_instasent(self, context: Any) -> dict[str, Any]:
        self._check()
        target = object_path(self.path, self.object_storage_conn_id)
        with self.hook.get_conn() as client, self.failing_fast(context):
            if self.incremental:
                target_file = IncrementalParquet(target, fingerprint=self._fingerprint(), lookback=self.lookback,
                                                 logger=self.log)
                export = self._export(client, target_file.since())
                self.log.info("exporting %s to %s incrementally (merge)", export.describe_target(), self.path)
                result = target_file.write(export, compression=self.compression)
            else:
                export = self._export(client)
                self.log.info("exporting %s to %s", export.describe_target(), self.path)
                result = write_parquet(export.batches(), target, export.schema, compression=self.compression,
                                       logger=self.log)
        out = export.stats.as_dict()
        if self.incremental:
            out["watermark"] = out["server_started"]
        out["target"] = {"path": result.path, "row_groups": result.row_groups, "bytes": result.bytes}
        return out


def _run_id(context: Any) -> str | None:
    """The Airflow run id, for the watermark row (None outside a task run)."""
    try:
        value = context["run_id"]
    except (KeyError, TypeError):
        return None
    return str(value) if value else None


def path_uri(path: str) -> str:
    """An asset URI for a file path or URL (``file://`` + the absolute path for a local one)."""
    if "://" in path:
        return path
    import os

    return "file://" + os.path.abspath(path)
