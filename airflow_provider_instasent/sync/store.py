"""Where a sync keeps its state: four tables in any SQL database the I/O layer speaks.

The tables and their columns are a stable, documented contract (docs/sync.md):

* ``instasent_sync_state``: one row per (``sync_id``, ``row_key``): the hash and the values the
  API last *accepted*, and the last attempt's hash, outcome and reason;
* ``instasent_sync_runs``: one row per run (counts, status, guardrail verdict);
* ``instasent_sync_changelog``: one row per row sent or removed in a run, with its outcome;
* ``instasent_sync_locks``: at most one row per ``sync_id``: the run holding it.

Per run, two work tables (``instasent_sync_stage_<run>`` and ``instasent_sync_plan_<run>``,
plus ``instasent_sync_out_<run>``) hold the model's keys and hashes so that the diff is SQL
and memory stays flat; they are dropped when the run ends.

Tested on DuckDB, PostgreSQL and SQLite (``UPDATE ... FROM`` is needed: SQLite 3.33+).
Times are ISO 8601 UTC text (``2026-11-28T09:30:00.000Z``): the same in every database.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ..io.sql import Database, DatabaseLockedError, Session, TableName, open_database
from ..io.sql.session import now_iso, open_session
from .errors import SyncLockedError

STATE_TABLE = "instasent_sync_state"
RUNS_TABLE = "instasent_sync_runs"
CHANGELOG_TABLE = "instasent_sync_changelog"
LOCKS_TABLE = "instasent_sync_locks"

#: how long a run waits for a DuckDB state file another process has open before refusing
DUCKDB_LOCK_WAIT_S = 2.0

#: the settings of a DuckDB state file the sync opens itself (a path). A bounded buffer pool
#: (DuckDB spills to ``<file>.tmp`` beyond it) and one thread (each thread adds its own
#: buffers outside the pool): the peak RSS stays flat as the model grows (docs/performance.md)
DUCKDB_MEMORY_LIMIT = "64MB"
DUCKDB_THREADS = 1

#: the four permanent tables, by role
TABLES = {"state": STATE_TABLE, "runs": RUNS_TABLE, "changelog": CHANGELOG_TABLE, "locks": LOCKS_TABLE}

_DDL = (
    f"""CREATE TABLE IF NOT EXISTS {STATE_TABLE} (
  sync_id VARCHAR(255) NOT NULL,
  row_key VARCHAR(255) NOT NULL,
  in_model INTEGER NOT NULL,
  accepted_hash VARCHAR(64),
  accepted_values TEXT,
  accepted_at VARCHAR(32),
  accepted_run_id VARCHAR(64),
  last_hash VARCHAR(64),
  last_outcome VARCHAR(16),
  last_reason TEXT,
  last_run_id VARCHAR(64),
  attempts INTEGER NOT NULL{{state_key}}
)""",
    f"""CREATE TABLE IF NOT EXISTS {RUNS_TABLE} (
  run_id VARCHAR(64) NOT NULL PRIMARY KEY,
  sync_id VARCHAR(255) NOT NULL,
  kind VARCHAR(16) NOT NULL,
  started_at VARCHAR(32) NOT NULL,
  finished_at VARCHAR(32),
  status VARCHAR(16) NOT NULL,
  dry_run INTEGER NOT NULL,
  rows_read BIGINT,
  added BIGINT,
  changed BIGINT,
  removed BIGINT,
  unchanged BIGINT,
  held BIGINT,
  conflicts BIGINT,
  requests BIGINT,
  accepted BIGINT,
  rejected BIGINT,
  failed BIGINT,
  guardrail TEXT,
  error TEXT
)""",
    f"""CREATE TABLE IF NOT EXISTS {CHANGELOG_TABLE} (
  run_id VARCHAR(64) NOT NULL,
  sync_id VARCHAR(255) NOT NULL,
  row_key VARCHAR(255),
  operation VARCHAR(16) NOT NULL,
  outcome VARCHAR(16) NOT NULL,
  reason TEXT,
  logged_at VARCHAR(32) NOT NULL
)""",
    f"""CREATE TABLE IF NOT EXISTS {LOCKS_TABLE} (
  sync_id VARCHAR(255) NOT NULL PRIMARY KEY,
  run_id VARCHAR(64) NOT NULL,
  host VARCHAR(255),
  pid INTEGER,
  acquired_at VARCHAR(32) NOT NULL
)""",
)


#: the state table's primary key, except on DuckDB (see `Store.keyed`)
_STATE_KEY = ",\n  PRIMARY KEY (sync_id, row_key)"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def open_state(state: Any) -> tuple[Database, Any | None]:
    """``state`` as a `Database`, plus the connection we opened (to close) if any.

    A ``str`` / ``Path`` is a DuckDB file (created if missing): the embedded default for
    notebooks and the demo. Anything else goes to `airflow_provider_instasent.io.sql.database`.
    """
    try:
        db, own = open_database(state, memory_limit=DUCKDB_MEMORY_LIMIT, lock_wait_s=DUCKDB_LOCK_WAIT_S)
    except DatabaseLockedError as exc:
        raise SyncLockedError(
            f"the sync state file {state} is open in another process (a run of a sync using this file is "
            f"in progress): this run refused to start and sent nothing. A DuckDB state file serves one "
            f"run at a time: wait for it, or "
            f"keep concurrent syncs in separate files or in PostgreSQL. ({exc})") from None
    if own is not None:  # our own embedded file: one thread (see DUCKDB_THREADS)
        with contextlib.suppress(Exception):
            own.execute(f"SET threads = {int(DUCKDB_THREADS)}")
    return db, own


class Store(Session):
    """One open connection to the state database for the length of a run (the SQL helpers
    are the I/O layer's `Session`)."""

    def __init__(self, db: Database, conn: Any, sync_id: str, run_id: str) -> None:
        super().__init__(db, conn)
        self.sync_id = sync_id
        self.run_id = run_id
        suffix = run_id.replace("-", "")[:16]
        self.stage = f"instasent_sync_stage_{suffix}"
        self.plan = f"instasent_sync_plan_{suffix}"
        self.out = f"instasent_sync_out_{suffix}"
        self.removed = f"instasent_sync_rm_{suffix}"

    @classmethod
    @contextlib.contextmanager
    def open(cls, state: Any, sync_id: str, run_id: str) -> Iterator[Store]:
        with open_session(state, factory=lambda db, conn: cls(db, conn, sync_id, run_id), opener=open_state) as store:
            yield store

    # -- SQL helpers (the rest are Session's) ---------------------------------------------
    def int_column(self, table: str, column: str, where: str, params: Sequence[Any] = (),
                   page: int = 100_000) -> np.ndarray:
        """``column`` of the rows of ``table`` matching ``where``, ascending, as an ``int64`` array.

        Read in keyset pages of ``page`` rows (``column > last ORDER BY column LIMIT page``): a
        driver that buffers a whole result set client-side (psycopg2, sqlite3) never holds more
        than one page, so only the array grows with the model (8 bytes a row).
        """
        parts: list[np.ndarray] = []
        last = -1
        sql = f"SELECT {column} FROM {table} WHERE ({where}) AND {column} > ? ORDER BY {column} LIMIT {int(page)}"
        while True:
            rows = self.query(sql, (*params, last))
            if not rows:
                break
            parts.append(np.fromiter((int(r[0]) for r in rows), dtype=np.int64, count=len(rows)))
            last = int(parts[-1][-1])
            if len(rows) < page:
                break
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def load(self, table: str, batch: pa.RecordBatch) -> None:
        """Bulk-load ``batch`` into ``table`` (COPY on PostgreSQL, Arrow on DuckDB)."""
        if not batch.num_rows:
            return
        loader = self.d.loader(self.conn, TableName.parse(table), batch.schema.names, self.ph)
        if self.d.name == "duckdb":  # the Arrow loader opens and commits its own transactions
            loader.load(batch)
            loader.finish()
            return
        with self.transaction():
            loader.load(batch)
            loader.finish()

    # -- schema ------------------------------------------------------------------------------
    @property
    def keyed(self) -> bool:
        """Whether the state table has a primary key and the work tables get indexes.

        Not on DuckDB: its indexes (ART) stay whole in memory, outside its buffer pool, and
        grow with the model (about 110 bytes a key), while its hash joins need no index. There
        the engine keeps ``(sync_id, row_key)`` unique itself: one plan row per key, inserted
        only when the key is not in the state, one run per sync at a time (the lock).
        """
        return self.d.name != "duckdb"

    def index(self, table: str, column: str) -> None:
        """Index a work table's column where indexes help the joins (not on DuckDB: `keyed`)."""
        if self.keyed:
            self.tx([f"CREATE INDEX {table}_{column[0]} ON {table} ({column})"])

    def ensure_tables(self, ddl: Sequence[str] = _DDL) -> None:
        """Create the sync's tables (or ``ddl``'s: the SMS ledger's) if missing."""
        statements = [st.replace("{state_key}", _STATE_KEY if self.keyed else "") for st in ddl]
        for attempt in range(3):
            try:
                self.tx(statements)
                return
            except Exception:  # two first runs creating the tables at once (PostgreSQL catalog race)
                if attempt == 2:
                    raise

    def create_work_tables(self) -> None:
        self.drop_work_tables()
        self.tx([
            f"CREATE TABLE {self.stage} (source_row BIGINT, row_key VARCHAR(255), row_hash VARCHAR(64), "
            f"item TEXT, valid INTEGER, in_window INTEGER)",
            f"CREATE TABLE {self.out} (source_row BIGINT, outcome VARCHAR(16), reason TEXT)",
            f"CREATE TABLE {self.removed} (row_key VARCHAR(255), outcome VARCHAR(16), reason TEXT)",
        ])

    def drop_work_tables(self) -> None:
        for table in (self.stage, self.plan, self.out, self.removed):
            with contextlib.suppress(Exception):
                self.tx([f"DROP TABLE IF EXISTS {table}"])

    # -- the lock ----------------------------------------------------------------------------
    def acquire_lock(self) -> None:
        """Insert this sync's lock row, or refuse with the holder named (a dead local holder is replaced)."""
        host, pid = socket.gethostname()[:255], os.getpid()
        insert = (f"INSERT INTO {LOCKS_TABLE} (sync_id, run_id, host, pid, acquired_at) VALUES (?, ?, ?, ?, ?)",
                  (self.sync_id, self.run_id, host, pid, now_iso()))
        for attempt in range(2):
            try:
                self.tx([insert])
                return
            except Exception as exc:
                holder = self.query(f"SELECT run_id, host, pid, acquired_at FROM {LOCKS_TABLE} WHERE sync_id = ?",
                                    (self.sync_id,))
                if not holder:
                    if attempt == 0:
                        continue  # released in between
                    raise
                run_id, h_host, h_pid, since = holder[0]
                if attempt == 0 and h_host == host and h_pid is not None and not _pid_alive(int(h_pid)):
                    self.tx([(f"DELETE FROM {LOCKS_TABLE} WHERE sync_id = ? AND run_id = ?", (self.sync_id, run_id))])
                    continue  # the holder died (SIGKILL): take over
                raise SyncLockedError(
                    f"sync {self.sync_id!r} is locked by run {run_id} (host {h_host}, pid {h_pid}, since {since}): "
                    f"another run of this sync is in progress, so this run refused to start and sent nothing. "
                    f"If no run is active (the holder was killed on another host), release it with: DELETE FROM "
                    f"{LOCKS_TABLE} WHERE sync_id = '{self.sync_id}'") from exc

    def release_lock(self) -> None:
        with contextlib.suppress(Exception):
            self.tx([(f"DELETE FROM {LOCKS_TABLE} WHERE sync_id = ? AND run_id = ?", (self.sync_id, self.run_id))])
