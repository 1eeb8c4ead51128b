"""The SMS send ledger: which message (idempotency key) was sent, in a durable SQL database.

It lives in the sync's state database (a DuckDB file, or any common-sql database: the
same ``Store`` connection and transaction machinery, ``sync/store.py``) in two tables, a stable
documented contract (docs/sms.md):

* ``instasent_sms_ledger``: one row per idempotency key: ``pending`` (a request may have
  left; its answer was not recorded), ``sent`` (the API answered with an SMS id, or a lookup
  found it) or ``failed`` (the API refused it: certainly not sent, a rerun may send it);
* ``instasent_sms_outcomes``: one row per source row per run (sent, skipped, held, rejected,
  refused, failed) with its reason: the run's report, written back like the sync changelog.

The order that makes "exactly once" hold through a crash at any point: ``pending`` is
committed before the request, ``sent`` after the answer. A ``pending`` row is never a claim:
it never causes a skip by itself; it makes the next attempt look the message up through the
API's SMS listings before sending again ("never claim before send": a crash between a claim
and the send would drop the message forever).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..sync.store import Store, now_iso

LEDGER_TABLE = "instasent_sms_ledger"
OUTCOMES_TABLE = "instasent_sms_outcomes"
#: the ledger's runs share the sync's lock table under this prefix (one sender per ledger)
LOCK_PREFIX = "sms-ledger:"

_DDL = (
    f"""CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
  idempotency_key VARCHAR(255) NOT NULL PRIMARY KEY,
  recipient VARCHAR(64) NOT NULL,
  text_hash VARCHAR(64) NOT NULL,
  utm_term VARCHAR(40),
  status VARCHAR(16) NOT NULL,
  sms_id VARCHAR(64),
  attempts INTEGER NOT NULL,
  first_attempt_at VARCHAR(32) NOT NULL,
  last_attempt_at VARCHAR(32) NOT NULL,
  answered_at VARCHAR(32),
  reason TEXT,
  run_id VARCHAR(64)
)""",
    f"""CREATE TABLE IF NOT EXISTS {OUTCOMES_TABLE} (
  run_id VARCHAR(64) NOT NULL,
  source_row BIGINT NOT NULL,
  idempotency_key VARCHAR(255),
  recipient VARCHAR(64),
  outcome VARCHAR(16) NOT NULL,
  reason TEXT,
  sms_id VARCHAR(64),
  logged_at VARCHAR(32) NOT NULL
)""",
)


@dataclass(frozen=True)
class Entry:
    """One ledger row."""

    key: str
    recipient: str
    status: str
    sms_id: str | None
    attempts: int
    first_attempt_at: str
    reason: str | None


class Ledger:
    """The ledger of one run, on an open ``Store`` (use ``Ledger.open``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @classmethod
    @contextlib.contextmanager
    def open(cls, state: Any, run_id: str, *, name: str = "default") -> Iterator[Ledger]:
        """The ledger in ``state`` (a DuckDB path, a common-sql hook, a DB-API or SQLAlchemy
        connection), its tables created, locked for this run (one sender per ledger ``name``)."""
        with Store.open(state, LOCK_PREFIX + name, run_id) as store:
            store.ensure_tables()  # the lock table is the sync's
            store.ensure_tables(_DDL)
            store.acquire_lock()
            try:
                yield cls(store)
            finally:
                store.release_lock()

    def get(self, keys: Sequence[str]) -> dict[str, Entry]:
        """The ledger rows of ``keys`` (absent keys are not in the result)."""
        out: dict[str, Entry] = {}
        for i in range(0, len(keys), 500):
            part = list(keys[i:i + 500])
            marks = ", ".join("?" for _ in part)
            rows = self.store.query(
                f"SELECT idempotency_key, recipient, status, sms_id, attempts, first_attempt_at, reason "
                f"FROM {LEDGER_TABLE} WHERE idempotency_key IN ({marks})", part)
            for k, r, s, sid, n, first, reason in rows:
                out[str(k)] = Entry(str(k), str(r), str(s), None if sid is None else str(sid), int(n), str(first),
                                    reason)
        return out

    def known_sms_ids(self) -> set[str]:
        """Every SMS id the ledger holds (a lookup never attributes one message to two keys)."""
        rows = self.store.query(f"SELECT sms_id FROM {LEDGER_TABLE} WHERE sms_id IS NOT NULL")
        return {str(r[0]) for r in rows}

    def pending(self, key: str, recipient: str, text_hash: str, utm_term: str | None, run_id: str) -> None:
        """Committed before the request leaves: "a request for ``key`` may have been sent"."""
        now = now_iso()
        with self.store.transaction() as cur:
            sql = self.store.sql
            cur.execute(sql(f"SELECT attempts FROM {LEDGER_TABLE} WHERE idempotency_key = ?"), [key])
            row = cur.fetchone()
            if row is None:
                cur.execute(sql(
                    f"INSERT INTO {LEDGER_TABLE} (idempotency_key, recipient, text_hash, utm_term, status, sms_id, "
                    f"attempts, first_attempt_at, last_attempt_at, answered_at, reason, run_id) "
                    f"VALUES (?, ?, ?, ?, 'pending', NULL, 1, ?, ?, NULL, NULL, ?)"),
                    [key, recipient, text_hash, utm_term, now, now, run_id])
            else:
                cur.execute(sql(
                    f"UPDATE {LEDGER_TABLE} SET status = 'pending', attempts = ?, last_attempt_at = ?, reason = NULL, "
                    f"run_id = ? WHERE idempotency_key = ?"), [int(row[0]) + 1, now, run_id, key])

    def answered(self, key: str, status: str, *, sms_id: str | None = None, reason: str | None = None) -> None:
        """The API's answer: ``sent`` (with the SMS id) or ``failed`` (certainly not sent), or a
        ``pending`` row's reason after an ambiguous outcome."""
        self.store.tx([(f"UPDATE {LEDGER_TABLE} SET status = ?, sms_id = ?, answered_at = ?, reason = ? "
                        f"WHERE idempotency_key = ?", (status, sms_id, now_iso(), reason, key))])

    def record_outcomes(self, run_id: str, rows: Iterable[tuple[int, str | None, str | None, str, str | None,
                                                               str | None]]) -> None:
        """Write back one run's per-row outcomes: (source_row, key, recipient, outcome, reason, sms_id)."""
        now = now_iso()
        batch = [(f"INSERT INTO {OUTCOMES_TABLE} (run_id, source_row, idempotency_key, recipient, outcome, reason, "
                  f"sms_id, logged_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (run_id, *row, now)) for row in rows]
        for i in range(0, len(batch), 1000):
            self.store.tx(batch[i:i + 1000])


__all__ = ["LEDGER_TABLE", "OUTCOMES_TABLE", "Entry", "Ledger"]
