"""What happened to every row: :class:`IngestReport`, and where rejects are written.

Rejects have one row per (source row, field, reason), with columns:

=============  ======================================================================
``source_row``  0-based row number in the input, in read order across files/batches
``_user_id``    the row's ``_user_id`` (null when it had none)
``field``       the field at fault (``plan``, ``_event_parameters.amount``...; empty when
                the problem is the whole item, e.g. a failed request)
``reason``      the reason, in words
``stage``       ``"local"`` (rejected by the loader's validation, never sent) or ``"api"``
                (sent and rejected by the API, or its request failed)
=============  ======================================================================

They go to the report's ``rejects`` DataFrame (the first ``max_rejects_in_memory``), and in
full to ``rejects_path`` (one Parquet file) and/or a SQL table (``rejects_table`` on
``rejects_conn_id``, created if missing, with an extra ``run_id`` column).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

REJECT_COLUMNS = ("source_row", "_user_id", "field", "reason", "stage")
REJECT_SCHEMA = pa.schema([
    ("source_row", pa.int64()),
    ("_user_id", pa.string()),
    ("field", pa.string()),
    ("reason", pa.string()),
    ("stage", pa.string()),
])


def _empty_rejects() -> Any:
    return REJECT_SCHEMA.empty_table().to_pandas()


@dataclass
class IngestReport:
    """Counts and rejects of one ingest run.

    Every row read ends up in exactly one of ``accepted``, ``rejected`` or ``skipped``:

    * ``accepted``: the API accepted it (in a dry run: would accept it). Events for a
      ``_user_id`` the datasource does not know are accepted by the API and silently not
      stored (unless they carry ``_user_data``): they count here.
    * ``rejected``: at least one error, found locally (never sent) or by the API; every error
      is a row of ``rejects``.
    * ``skipped``: read but not sent because the run stopped early (``on_invalid="fail"``,
      ``max_rejected_ratio``, a failed request, the automations guard).

    ``sent`` counts items sent in push requests, ``requests`` the push requests, ``retries``
    the client's retries during the run. ``would_fire_automations``: events inside the ±1 h
    window (accepted ones; in a dry run, the ones that would be accepted).
    """

    kind: str
    rows: int = 0
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    skipped: int = 0
    requests: int = 0
    retries: int = 0
    elapsed_s: float = 0.0
    dry_run: bool = False
    rejected_local: int = 0
    rejected_api: int = 0
    would_fire_automations: int | None = None
    total_rows: int | None = None
    http_statuses: dict[int, int] = field(default_factory=dict)
    rejects: Any = field(default_factory=_empty_rejects, repr=False)
    reject_entries: int = 0
    rejects_truncated: bool = False
    rejects_path: str | None = None
    rejects_table: str | None = None
    status: str = "running"
    error: str | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def rejected_ratio(self) -> float:
        return self.rejected / self.rows if self.rows else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Counts only (no data): what the operators push to XCom."""
        return {
            "kind": self.kind,
            "status": self.status,
            "dry_run": self.dry_run,
            "rows": self.rows,
            "sent": self.sent,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "rejected_local": self.rejected_local,
            "rejected_api": self.rejected_api,
            "skipped": self.skipped,
            "requests": self.requests,
            "retries": self.retries,
            "elapsed_s": round(self.elapsed_s, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "would_fire_automations": self.would_fire_automations,
            "reject_entries": self.reject_entries,
            "rejects_path": self.rejects_path,
            "rejects_table": self.rejects_table,
            "http_statuses": {str(k): v for k, v in sorted(self.http_statuses.items())},
            "error": self.error,
        }

    def summary(self) -> str:
        text = (f"{self.kind}: {self.rows} rows, {self.accepted} accepted, {self.rejected} rejected "
                f"({self.rejected_local} local, {self.rejected_api} api), {self.skipped} skipped, "
                f"{self.requests} requests, {self.retries} retries, {self.elapsed_s:.1f}s "
                f"({self.rows_per_s:.0f} rows/s)")
        if self.dry_run:
            text = "DRY RUN " + text
        if self.would_fire_automations is not None:
            text += f", {self.would_fire_automations} events inside the ±1h automation window"
        return text

    def __str__(self) -> str:
        return self.summary()


class RejectsSink:
    """Collects rejects: in memory (bounded) and streamed to Parquet and/or a SQL table."""

    def __init__(self, *, path: Any = None, table: str | None = None, conn_id: str | None = None,
                 max_in_memory: int = 100_000, run_id: str | None = None, flush_rows: int = 10_000) -> None:
        if table and not conn_id:
            raise ValueError("rejects_table needs rejects_conn_id (a common-sql connection)")
        self.path = path
        self.table = table
        self.conn_id = conn_id
        self.max_in_memory = max_in_memory
        self.run_id = run_id
        self.flush_rows = flush_rows
        self.entries = 0
        self.truncated = False
        self._memory: list[pa.Table] = []
        self._in_memory = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._file: Any = None
        self._hook: Any = None

    @property
    def durable(self) -> bool:
        return bool(self.path or self.table)

    def add(self, rows: Sequence[int], user_ids: Sequence[Any], fields: Sequence[str], reasons: Sequence[str],
            stage: str) -> None:
        n = len(rows)
        if not n:
            return
        table = pa.Table.from_arrays(
            [pa.array(rows, pa.int64()), pa.array(user_ids, pa.string()), pa.array(fields, pa.string()),
             pa.array(reasons, pa.string()), pa.array([stage] * n, pa.string())],
            schema=REJECT_SCHEMA,
        )
        self.entries += n
        room = self.max_in_memory - self._in_memory
        if room > 0:
            part = table if n <= room else table.slice(0, room)
            self._memory.append(part)
            self._in_memory += part.num_rows
        if n > room:
            if not self.truncated:
                log.warning("more than %d rejects: the report keeps the first %d in memory%s",
                            self.max_in_memory, self.max_in_memory,
                            "; all of them are written to the rejects destination" if self.durable else "")
            self.truncated = True
        if self.durable:
            self._pending.append(table)
            self._pending_rows += n
            if self._pending_rows >= self.flush_rows:
                self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        self._pending, self._pending_rows = [], 0
        if self.path:
            self._parquet_writer().write_table(table)
        if self.table:
            self._write_sql(table)

    def _parquet_writer(self) -> pq.ParquetWriter:
        if self._writer is None:
            path = self.path
            if isinstance(path, (str, os.PathLike)):
                parent = os.path.dirname(os.fspath(path))
                if parent:
                    os.makedirs(parent, exist_ok=True)
                self._writer = pq.ParquetWriter(os.fspath(path), REJECT_SCHEMA)
            else:  # an ObjectStoragePath or any object with open()
                self._file = path.open("wb")
                self._writer = pq.ParquetWriter(self._file, REJECT_SCHEMA)
        return self._writer

    def _sql_hook(self) -> Any:
        if self._hook is None:
            from .._airflow_compat import BaseHook
            from ..export.schema import TableName, qualified
            from ..export.sql import detect_dialect

            hook = BaseHook.get_connection(str(self.conn_id)).get_hook()
            self._quoted = qualified(TableName.parse(str(self.table)), detect_dialect(hook))
            hook.run(
                f"CREATE TABLE IF NOT EXISTS {self._quoted} (source_row BIGINT, _user_id TEXT, field TEXT, "
                f"reason TEXT, stage TEXT, run_id TEXT)"
            )
            self._hook = hook
        return self._hook

    def _write_sql(self, table: pa.Table) -> None:
        hook = self._sql_hook()
        columns = [table.column(c).to_pylist() for c in REJECT_COLUMNS]
        rows = [(*values, self.run_id) for values in zip(*columns)]
        hook.insert_rows(self._quoted, rows, target_fields=[*REJECT_COLUMNS, "run_id"], commit_every=5000)

    def close(self) -> None:
        """Write what is pending; a Parquet destination is written even with no rejects."""
        try:
            self.flush()
            if self.path and self._writer is None:
                self._parquet_writer()
        finally:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            if self._file is not None:
                self._file.close()
                self._file = None

    def dataframe(self) -> Any:
        if not self._memory:
            return _empty_rejects()
        return pa.concat_tables(self._memory).to_pandas()
