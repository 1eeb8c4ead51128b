"""What happened to every row: ``IngestReport``, and where rejects are written.

Rejects have one row per (source row, field, reason), with columns:

=============  ======================================================================
``source_row``  0-based row number in the input, in read order across files/batches
``_user_id``    the row's ``_user_id`` (null when it had none)
``field``       the field at fault (``plan``, ``_event_parameters.amount``...; empty when
                the problem is the whole item, e.g. a failed request)
``reason``      the reason, in words
``stage``       ``"local"`` (rejected by the loader's validation or its contact check, never
                sent), ``"api"`` (sent and rejected by the API, or its request certainly not
                applied), ``"unknown"`` (not a reject: its request failed in a way that may
                have stored it; counted in ``unknown``), ``"dropped"`` (an invalid value left
                out, the row sent: ``invalid_values="drop_value"``) or ``"verify"`` (accepted,
                not found when read back: ``verify=True``)
=============  ======================================================================

They go to the report's ``rejects`` DataFrame (the first ``max_rejects_in_memory``), and in
full to ``rejects_path`` (one Parquet file) and/or a SQL table (``rejects_table`` in the
database ``rejects_conn``: a common-sql hook, a DB-API or SQLAlchemy connection; created if
missing, with an extra ``run_id`` column). The contract is docs/adr/0002-rejects-accounting.md.

``aggregate_reports`` adds up the reports of the shards of one sharded run.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ..io.parquet import ParquetFileWriter
from ..io.sql import Database, TableName, database

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

    Every row read ends up in exactly one of ``accepted``, ``rejected``, ``unknown`` or ``skipped``:

    * ``accepted``: the API accepted it (in a dry run: would accept it). An event is sent only
      when the run can vouch for its contact (``check_contacts``, docs/ingest.md "No event
      lost in silence"); with the check off, ``unverified`` counts the accepted events nobody
      vouched for (the API accepts an event for an unknown contact and never stores it).
    * ``rejected``: at least one error, found locally (never sent) or by the API; every error
      is a row of ``rejects``.
    * ``unknown``: sent in a request that failed after the client's retries in a way that may
      have stored it (a timeout, a lost connection, a 5xx, a 2xx that could not be read): not
      a reject, not an acceptance; its entry in ``rejects`` has ``stage="unknown"``. Re-running
      the same input settles it (contacts are upserts, events carry a stable ``_event_id``).
    * ``skipped``: read but not sent because the run stopped early (``on_invalid="fail"``,
      ``max_rejected_ratio``, a failed request, the automations guard).

    ``sent`` counts items sent in push requests, ``requests`` the push requests, ``retries``
    the client's retries during the run. ``would_fire_automations``: events inside the ±1 h
    window (accepted ones; in a dry run, the ones that would be accepted). ``started_at`` and
    ``finished_at`` are epoch seconds, ``worker`` the ``host:pid`` that ran it: what
    ``aggregate_reports`` needs for a sharded run's wall time and rows/s.

    No event lost in silence: ``missing_contacts`` counts the events rejected (within
    ``rejected_local``) because their contact does not exist or was rejected earlier in the
    run or chain; ``contact_check_calls`` the API calls that check made; ``unverified`` (None
    while the check is on) the accepted events whose contact was not checked;
    ``contacts_created`` the contacts created through ``_user_data`` with
    ``create_missing_contacts=True``; ``values_dropped`` the invalid values left out with
    ``invalid_values="drop_value"`` (their rows are counted as usual). With ``verify=True``:
    ``verified`` accepted rows read back and found, ``not_stored`` accepted rows not found,
    ``verify_calls`` the reads. A contacts run with ``sync=True`` keeps ``written_user_ids``
    (for ``contacts_from=``; not in ``to_dict``).
    """

    kind: str
    rows: int = 0
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    skipped: int = 0
    #: rows of failed requests the API may have stored (see the class doc)
    unknown: int = 0
    #: events rejected locally because an earlier row holds their ``_event_id`` with another
    #: payload (counted in ``rejected_local`` too; the first row wins, see ``idempotency``)
    event_id_collisions: int = 0
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
    started_at: float | None = None
    finished_at: float | None = None
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    missing_contacts: int = 0
    contact_check_calls: int = 0
    unverified: int | None = None
    values_dropped: int = 0
    contacts_created: int = 0
    verified: int | None = None
    not_stored: int | None = None
    verify_calls: int = 0
    written_user_ids: set[str] | None = field(default=None, repr=False)

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
            "unknown": self.unknown,
            "event_id_collisions": self.event_id_collisions,
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
            "started_at": None if self.started_at is None else round(self.started_at, 3),
            "finished_at": None if self.finished_at is None else round(self.finished_at, 3),
            "worker": self.worker,
            "missing_contacts": self.missing_contacts,
            "contact_check_calls": self.contact_check_calls,
            "unverified": self.unverified,
            "values_dropped": self.values_dropped,
            "contacts_created": self.contacts_created,
            "verified": self.verified,
            "not_stored": self.not_stored,
            "verify_calls": self.verify_calls,
        }

    def summary(self) -> str:
        text = (f"{self.kind}: {self.rows} rows, {self.accepted} accepted, {self.rejected} rejected "
                f"({self.rejected_local} local, {self.rejected_api} api), "
                + (f"{self.unknown} unknown outcome, " if self.unknown else "")
                + (f"{self.event_id_collisions} _event_id collisions, " if self.event_id_collisions else "")
                + f"{self.skipped} skipped, "
                f"{self.requests} requests, {self.retries} retries, {self.elapsed_s:.1f}s "
                f"({self.rows_per_s:.0f} rows/s)")
        if self.dry_run:
            text = "DRY RUN " + text
        if self.would_fire_automations is not None:
            text += f", {self.would_fire_automations} events inside the ±1h automation window"
        if self.missing_contacts:
            text += f", {self.missing_contacts} events rejected for their contact"
        if self.contacts_created:
            text += f", {self.contacts_created} contacts created with their events"
        if self.unverified is not None:
            text += f", {self.unverified} accepted events unverified (check_contacts=False)"
        if self.values_dropped:
            text += f", {self.values_dropped} invalid values dropped"
        if self.verified is not None:
            text += f", read back: {self.verified} stored, {self.not_stored} not found"
        return text

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        """The report as an HTML table in Jupyter: counts, throughput, the first rejects."""
        from .._html import report_html

        title = f"{'DRY RUN ' if self.dry_run else ''}Instasent {self.kind} ingest: {self.status}"
        counts = [
            ("rows", self.rows),
            ("accepted", self.accepted),
            ("rejected", f"{self.rejected:,} ({self.rejected_local:,} local, {self.rejected_api:,} api)"),
            ("skipped", self.skipped),
            ("unknown outcome (may be stored)", self.unknown),
            ("_event_id collisions (first row kept)", self.event_id_collisions),
            ("requests", self.requests),
            ("retries", self.retries),
            ("seconds", round(self.elapsed_s, 1)),
            ("rows/s", round(self.rows_per_s, 1)),
            ("events inside the ±1h automation window", self.would_fire_automations),
            ("events rejected for their contact", self.missing_contacts or None),
            ("accepted events unverified", self.unverified),
            ("invalid values dropped", self.values_dropped or None),
            ("read back: stored / not found", None if self.verified is None else
             f"{self.verified:,} / {self.not_stored:,}"),
            ("rejects written to", self.rejects_path or self.rejects_table),
            ("error", self.error),
        ]
        return report_html(title, counts, frame=self.rejects, frame_title="rejects", total=self.reject_entries)


class RejectsSink:
    """Collects rejects: in memory (bounded) and streamed to Parquet and/or a SQL table.

    ``path``: anything ``locate`` takes (written
    atomically when the run ends, even with no rejects). ``table`` in ``db`` (a common-sql
    hook, a DB-API or SQLAlchemy connection): created if missing, appended to as rejects come.
    """

    def __init__(self, *, path: Any = None, table: str | None = None, db: Any = None,
                 max_in_memory: int = 100_000, run_id: str | None = None, flush_rows: int = 10_000) -> None:
        if table and db is None:
            raise ValueError("rejects_table needs rejects_conn (a common-sql hook, a DB-API or SQLAlchemy connection)")
        self.path = path
        self.table = table
        self.db: Database | None = database(db) if table else None
        self.max_in_memory = max_in_memory
        self.run_id = run_id
        self.flush_rows = flush_rows
        self.entries = 0
        self.truncated = False
        self._memory: list[pa.Table] = []
        self._in_memory = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._writer: ParquetFileWriter | None = None
        self._quoted: str | None = None

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
            self._parquet_writer().write(table)
        if self.table:
            self._write_sql(table)

    def _parquet_writer(self) -> ParquetFileWriter:
        if self._writer is None:
            self._writer = ParquetFileWriter(self.path, REJECT_SCHEMA, compression="zstd")
        return self._writer

    def _write_sql(self, table: pa.Table) -> None:
        assert self.db is not None
        assert self.table is not None
        dialect = self.db.dialect
        if self._quoted is None:
            self._quoted = dialect.qt(TableName.parse(self.table))
            self.db.execute(f"CREATE TABLE IF NOT EXISTS {self._quoted} (source_row BIGINT, _user_id TEXT, "
                            "field TEXT, reason TEXT, stage TEXT, run_id TEXT)")
        columns = [table.column(c).to_pylist() for c in REJECT_COLUMNS]
        rows = [(*values, self.run_id) for values in zip(*columns)]
        names = ", ".join(dialect.qi(c) for c in (*REJECT_COLUMNS, "run_id"))
        marks = ", ".join([self.db.placeholder] * (len(REJECT_COLUMNS) + 1))
        self.db.execute(f"INSERT INTO {self._quoted} ({names}) VALUES ({marks})", rows=rows)

    def close(self) -> None:
        """Write what is pending; a Parquet destination is written even with no rejects."""
        try:
            self.flush()
            if self.path and self._writer is None:
                self._parquet_writer()
        finally:
            if self._writer is not None:
                self._writer.commit()  # the rejects so far are kept, even when the run failed
                self._writer = None

    def dataframe(self) -> Any:
        if not self._memory:
            return _empty_rejects()
        return pa.concat_tables(self._memory).to_pandas()


# ----------------------------------------------------------------------------------------------
# sharded runs
# ----------------------------------------------------------------------------------------------
_SUMMED = ("rows", "accepted", "rejected", "requests", "retries", "skipped", "duplicates", "unknown",
           "event_id_collisions", "missing_contacts", "unverified", "values_dropped", "not_stored")


def aggregate_reports(reports: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Totals of per-shard reports (what each mapped ingest task returned: ``IngestReport.to_dict()``).

    Sums ``rows``, ``accepted``, ``rejected``, ``requests``, ``retries``, ``skipped``,
    ``duplicates``, ``unknown`` and ``event_id_collisions`` when present (each shard checks
    collisions within its own rows); ``task_seconds`` is the sum of the shards' ``elapsed_s``;
    ``wall_seconds`` spans the earliest ``started_at`` to the latest ``finished_at`` (epoch
    seconds), and ``rows_per_second`` is ``rows / wall_seconds``. ``by_worker`` counts shards
    and rows per ``worker``. ``None`` entries (a shard that produced no report) are counted
    in ``missing``.
    """
    totals: dict[str, Any] = dict.fromkeys(_SUMMED, 0)
    shards = missing = 0
    task_seconds = slowest = 0.0
    started: float | None = None
    finished: float | None = None
    by_worker: dict[str, dict[str, int]] = {}
    for report in reports:
        if report is None:
            missing += 1
            continue
        shards += 1
        for k in _SUMMED:
            if report.get(k) is not None:
                totals[k] += int(report[k])
        elapsed = float(report.get("elapsed_s", report.get("elapsed")) or 0.0)
        task_seconds += elapsed
        slowest = max(slowest, elapsed)
        if report.get("started_at") is not None:
            s = float(report["started_at"])
            started = s if started is None else min(started, s)
        if report.get("finished_at") is not None:
            f = float(report["finished_at"])
            finished = f if finished is None else max(finished, f)
        worker = report.get("worker")
        if worker is not None:
            entry = by_worker.setdefault(str(worker), {"shards": 0, "rows": 0})
            entry["shards"] += 1
            entry["rows"] += int(report.get("rows") or 0)
    wall = (finished - started) if started is not None and finished is not None else None
    return {
        "shards": shards,
        "missing": missing,
        **totals,
        "task_seconds": round(task_seconds, 3),
        "slowest_shard_seconds": round(slowest, 3),
        "wall_seconds": None if wall is None else round(wall, 3),
        "rows_per_second": None if not wall else round(totals["rows"] / wall, 1),
        "by_worker": dict(sorted(by_worker.items())),
    }
