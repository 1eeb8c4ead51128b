"""Incremental export: what changed since a watermark, read narrowly, and where the watermark lives.

A run reads only the contacts updated (``_date_updated``), or the events dated
(``created-at``), since ``since`` = the stored watermark minus a lookback window
(docs/export.md, "Incremental export"):

* **server side, coarse**: a ``range-date-relative`` condition ANDed to the export's filter.
  Its unit is the day (the only period the query-filter docs show) and it is relative to the
  server's now, so it asks for the whole days that cover ``since``, plus a margin: a superset;
* **client side, exact**: rows whose cursor column (``updated_at``, events ``_event_date``) is
  before ``since`` are dropped before the writer sees them (a null cursor is kept).

The watermark is the **server's** time when the run started (the ``Date`` header, see
``Transport.server_time``), never the local clock and never the newest value read: a change
made while the scroll runs is dated after it and is read by the next run. It advances only
with the target: in the target database (``SqlWatermarks``, a row written in the transaction
that commits the target) or in the Parquet file's own metadata (published by the same
rename). ADR 0010 says why.

No module here imports Airflow.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..client.errors import InstasentConfigError, InstasentError
from ..io.parquet import ParquetWriteResult, read_metadata, write_parquet
from ..io.sql import SqlWriter, SqlWriteResult, TableName
from ..io.sql.session import iso_utc, now_iso, open_session, parse_iso
from ..io.sql.writer import Statements

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_LOOKBACK",
    "PARQUET_WATERMARK_KEY",
    "SERVER_FILTER_MARGIN",
    "WATERMARKS_TABLE",
    "Cursor",
    "IncrementalParquet",
    "IncrementalSql",
    "SqlWatermarks",
    "Watermark",
    "coarse_root",
    "cursor_for",
    "fingerprint",
    "keep_since",
    "parquet_watermark",
    "parse_lookback",
    "parse_since",
    "plan_since",
    "server_now",
]

#: How far before the stored watermark each run reads again (late updates, indexing delay,
#: clock differences between the API's servers).
DEFAULT_LOOKBACK = dt.timedelta(hours=1)
#: Extra time the coarse server-side filter covers beyond ``since`` (the ``Date`` header's
#: one-second resolution, the time between reading it and the first page).
SERVER_FILTER_MARGIN = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)

WATERMARKS_TABLE = "instasent_export_watermarks"
#: The Parquet file's key-value metadata entry that holds its watermark (JSON).
PARQUET_WATERMARK_KEY = "instasent.watermark"

_DDL = f"""CREATE TABLE IF NOT EXISTS {WATERMARKS_TABLE} (
  target VARCHAR(255) NOT NULL PRIMARY KEY,
  source VARCHAR(16) NOT NULL,
  fingerprint VARCHAR(64) NOT NULL,
  watermark VARCHAR(32) NOT NULL,
  run_id VARCHAR(255),
  rows_read BIGINT,
  rows_written BIGINT,
  updated_at VARCHAR(32) NOT NULL
)"""


@dataclass(frozen=True)
class Cursor:
    """How one kind of export is narrowed: the filter condition and the exact column."""

    condition: str  # the query-filter condition type
    key: str  # the filter key the server compares
    column: str  # the exported column the client compares


#: audience/segment contacts by their last update, events by their date (``created-at``
#: is the event query filter's date key; the emulator answers it with ``_event_date``)
CURSORS = {
    "audience": Cursor("attribute_condition", "_date_updated", "updated_at"),
    "segment": Cursor("attribute_condition", "_date_updated", "updated_at"),
    "events": Cursor("event_condition", "created-at", "_event_date"),
}


def cursor_for(source: str) -> Cursor:
    return CURSORS[source]


def parse_since(value: Any, what: str = "since") -> dt.datetime | None:
    """A timezone-aware ``datetime`` from a datetime, an ISO 8601 string or None."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InstasentConfigError(f"{what} must be an ISO 8601 date-time; got {value!r}") from None
    if not isinstance(value, dt.datetime):
        raise InstasentConfigError(f"{what} must be a datetime or an ISO 8601 string; got {type(value).__name__}")
    if value.tzinfo is None:
        raise InstasentConfigError(f"{what} must carry a timezone (a naive datetime is ambiguous): {value!r}")
    return value.astimezone(dt.UTC)


def parse_lookback(value: Any) -> dt.timedelta:
    """A lookback window from a ``timedelta`` or a number of seconds (None: ``DEFAULT_LOOKBACK``)."""
    if value is None:
        return DEFAULT_LOOKBACK
    if isinstance(value, dt.timedelta):
        window = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        window = dt.timedelta(seconds=value)
    else:
        raise InstasentConfigError(f"lookback must be a timedelta or a number of seconds; got {value!r}")
    if window < dt.timedelta(0):
        raise InstasentConfigError(f"lookback must not be negative; got {window}")
    return window


def plan_since(mark: Watermark | None, fingerprint: str, lookback: dt.timedelta, logger: Any = None
               ) -> dt.datetime | None:
    """Where an incremental run reads from: the watermark minus ``lookback``, or None (a full
    run) when there is no watermark or it was taken with another source, filter or columns."""
    logger = logger or log
    if mark is None:
        logger.info("incremental export: no watermark stored with the target yet: this run reads everything")
        return None
    if mark.fingerprint != fingerprint:
        logger.warning("incremental export: the watermark was stored by an export of another source, filter or "
                       "column list: this run reads everything")
        return None
    since = mark.at - lookback
    logger.info("incremental export: watermark %s, lookback %s: reading what changed since %s",
                iso_utc(mark.at), lookback, iso_utc(since))
    return since


def server_now(client: Any) -> dt.datetime:
    """The API server's current time, read from the ``Date`` header of a fresh ``GET /``
    (``Transport.server_time``; one small request a run, so a clock that jumped since the last
    response, such as the emulator's, is seen); the local clock, with a warning, when the server
    sends no ``Date``."""
    read = getattr(client, "server_time", None)
    now = None
    if callable(read):
        try:
            client.get_token_info()
        except InstasentError:  # an error response carries a Date header too
            pass
        now = read()
    if now is None:
        log.warning("the API sent no Date header: the watermark uses this machine's clock (the lookback "
                    "window must cover its difference from the server's)")
        now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)  # stored with milliseconds


def coarse_root(root: Mapping[str, Any] | None, source: str, since: dt.datetime, now: dt.datetime
                ) -> dict[str, Any]:
    """``root`` ANDed with "changed in the last N days", N whole days covering ``since`` (with
    ``SERVER_FILTER_MARGIN``) before the server's ``now``: never narrower than ``since``."""
    cursor = cursor_for(source)
    days = max(1, math.ceil((now - since + SERVER_FILTER_MARGIN) / DAY))
    condition = {
        "type": cursor.condition,
        "key": cursor.key,
        "operator": "range-date-relative",
        "values": {"lowerOffset": -days, "upperOffset": None, "lowerExcludeEquals": False,
                   "upperExcludeEquals": False, "lowerRounding": False, "upperRounding": False,
                   "lowerOffsetPeriod": "day", "upperOffsetPeriod": "day"},
    }
    children: list[Any] = [condition] if root is None else [dict(root), condition]
    return {"type": "group", "join": "and", "children": children}


def keep_since(batch: pa.RecordBatch, column: str, since: dt.datetime) -> pa.Array:
    """The exact filter: rows whose ``column`` is at or after ``since``, or null (kept: unknown)."""
    values = batch.column(column)
    bound = pa.scalar(since, type=values.type)
    return pc.fill_null(pc.greater_equal(values, bound), True)


def fingerprint(source: str, *, segment: str | None = None, parameter: str | None = None,
                filter: Mapping[str, Any] | None = None, attributes: Sequence[str] | None = None) -> str:
    """What an incremental export reads, hashed: a watermark is valid for this only (a changed
    filter or column list starts again with a full run)."""
    what = {"source": source, "segment": segment, "parameter": parameter, "filter": filter,
            "attributes": list(attributes) if attributes is not None else None}
    return hashlib.sha256(orjson.dumps(what, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


@dataclass(frozen=True)
class Watermark:
    """The server time up to which a target holds every change, and what it was read with."""

    at: dt.datetime
    fingerprint: str

    def as_json(self) -> bytes:
        return orjson.dumps({"watermark": iso_utc(self.at), "fingerprint": self.fingerprint})

    @classmethod
    def from_json(cls, raw: bytes | str) -> Watermark | None:
        try:
            data = orjson.loads(raw)
            return cls(parse_iso(data["watermark"]), str(data["fingerprint"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


class SqlWatermarks:
    """The watermarks of a database's export targets: one row per target table in
    ``instasent_export_watermarks`` (next to the sync's ``instasent_sync_*`` tables when they
    share a database), read through the I/O layer's `Session`."""

    def __init__(self, db: Any, table: str) -> None:
        self.db = db
        self.target = str(TableName.parse(table))

    def ensure_table(self) -> None:
        with open_session(self.db) as session:
            for attempt in range(3):
                try:
                    session.tx([_DDL])
                    return
                except Exception:  # two first runs creating the table at once (PostgreSQL catalog race)
                    if attempt == 2:
                        raise

    def read(self) -> Watermark | None:
        """This target's watermark: None when it was never exported incrementally, or when the
        table is gone (a watermark without its table must not make the next run partial)."""
        self.ensure_table()
        with open_session(self.db) as session:
            rows = session.query(f"SELECT watermark, fingerprint FROM {WATERMARKS_TABLE} WHERE target = ?",
                                 (self.target,))
            if rows:
                with session.transaction() as cur:
                    exists = session.d.existing_columns(session.conn, cur, TableName.parse(self.target))
                if exists is None:
                    log.warning("incremental export: %s has a watermark but no table: this run reads everything",
                                self.target)
                    return None
        if not rows:
            return None
        return Watermark(parse_iso(str(rows[0][0])), str(rows[0][1]))

    def advance(self, mark: Watermark, source: str, run_id: str | None, rows_read: int, rows_written: int
                ) -> Statements:
        """The statements that store ``mark`` (for the writer's final transaction, ``also=``)."""
        return [
            (f"DELETE FROM {WATERMARKS_TABLE} WHERE target = ?", (self.target,)),
            (f"INSERT INTO {WATERMARKS_TABLE} (target, source, fingerprint, watermark, run_id, rows_read, "
             f"rows_written, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
             (self.target, source, mark.fingerprint, iso_utc(mark.at), run_id, rows_read, rows_written,
              now_iso())),
        ]


def parquet_watermark(path: Any) -> Watermark | None:
    """The watermark stored in a Parquet file's metadata (None: no file, or none stored)."""
    metadata = read_metadata(path)
    if metadata is None or PARQUET_WATERMARK_KEY.encode() not in metadata:
        return None
    return Watermark.from_json(metadata[PARQUET_WATERMARK_KEY.encode()])


class _Incremental:
    """What the two incremental targets share: where to read from, and the mark a run earns.

    The ``export`` they write is an ``Export`` built with ``since=self.since()`` and
    ``track_start=True`` (``export.engine`` imports this module, so it is not named here).
    """

    def __init__(self, fingerprint: str, lookback: Any = None, logger: Any = None) -> None:
        self.fingerprint = fingerprint
        self.lookback = parse_lookback(lookback)
        self.log = logger or log
        self.mark: Watermark | None = None  # the stored one, once read

    def stored(self) -> Watermark | None:
        raise NotImplementedError

    def since(self) -> dt.datetime | None:
        """Read the stored watermark: the time this run reads from (None: a full run)."""
        self.mark = self.stored()
        return plan_since(self.mark, self.fingerprint, self.lookback, self.log)

    def earned(self, export: Any) -> Watermark:
        """The server's time when ``export`` started: the watermark its commit advances to."""
        export.start()
        started = export.stats.server_started
        if started is None:
            raise InstasentConfigError("an incremental export needs Export(..., track_start=True)")
        return Watermark(started, self.fingerprint)


class IncrementalSql(_Incremental):
    """An incremental export into ``table`` of ``db`` (a hook, a DB-API or SQLAlchemy
    connection): merged on the export's key, the watermark advanced in the same transaction."""

    def __init__(self, db: Any, table: str, *, fingerprint: str, lookback: Any = None, logger: Any = None
                 ) -> None:
        super().__init__(fingerprint, lookback, logger)
        self.db = db
        self.table = table
        self.marks = SqlWatermarks(db, table)

    def stored(self) -> Watermark | None:
        return self.marks.read()

    def write(self, export: Any, *, run_id: str | None = None) -> SqlWriteResult:
        mark = self.earned(export)
        self.marks.ensure_table()  # the watermark row is written in the target's final transaction
        writer = SqlWriter(self.db, self.table, export.schema, write_disposition="merge", key=export.key,
                           logger=self.log)

        def advance() -> Statements:  # after the last batch, in the transaction that commits the target
            stats = export.stats
            return self.marks.advance(mark, export.source, run_id, stats.rows_read, stats.rows)

        return writer.write(export.batches(), also=advance)


class IncrementalParquet(_Incremental):
    """An incremental export into the Parquet file at ``path``: merged on the export's key into
    a new file that carries its watermark in its metadata, published by one atomic rename."""

    def __init__(self, path: Any, *, fingerprint: str, lookback: Any = None, logger: Any = None) -> None:
        super().__init__(fingerprint, lookback, logger)
        self.path = path

    def stored(self) -> Watermark | None:
        return parquet_watermark(self.path)

    def write(self, export: Any, *, compression: str = "zstd") -> ParquetWriteResult:
        mark = self.earned(export)
        return write_parquet(export.batches(), self.path, export.schema, compression=compression, logger=self.log,
                             write_disposition="merge", key=export.key,
                             metadata={PARQUET_WATERMARK_KEY: mark.as_json().decode()})
