"""Stateful sync: send only what changed since the API last accepted it (docs/sync.md).

One run:

1. **lock** the ``sync_id`` (a row in ``instasent_sync_locks``), record the run;
2. **read + hash**: the source is read once with the ingest engine's own reader, validator
   and encoder; each valid row becomes the JSON item the API would receive, and its hash is
   BLAKE2b-128 over that item with sorted keys (what is sent is what is compared). Keys,
   hashes and items are bulk-loaded into a staging table of the state database, batch by
   batch: memory stays one batch;
3. **diff in SQL** against ``instasent_sync_state``: added / changed / unchanged / removed
   (contacts), new / unchanged / conflict (events);
4. **guardrails** (``min_rows``, ``max_removals``, ``max_change_ratio``): nothing sent when one trips;
5. **send** the rows to send (a second read of the source, filtered by row number; one-shot
   sources are spooled to local disk in step 2) through `ingest.engine.ingest` with
   its ``on_outcome`` hook; each outcome flushed into the state as it arrives (every
   ``flush_rows``): a row's accepted hash and values advance only when the API accepted it;
6. removed contacts deleted (``on_removed="delete"``), the run's counts written, the lock released.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import orjson
import pyarrow as pa

from ..ingest.coerce import source_values
from ..ingest.engine import IngestOptions, ingest
from ..ingest.errors import IngestError, IngestSchemaError
from ..ingest.report import IngestReport
from ..ingest.sources import ColumnMapper, SpooledSource, open_source
from ..ingest.specs import EVENT_ID, USER_ID, Kind, ProjectSpecs
from ..ingest.validate import Validator
from .errors import SyncError, SyncGuardrailError
from .store import CHANGELOG_TABLE, RUNS_TABLE, STATE_TABLE, Store, now_iso

log = logging.getLogger("airflow_provider_instasent.sync")

OnRemoved = Literal["ignore", "delete"]

#: outcomes are applied to the state every this many rows (and at the end): a killed run
#: re-sends at most this many rows that were accepted but not yet recorded. Each application is
#: one set-based UPDATE against the state table, so fewer, larger ones are much cheaper on a
#: big model (docs/sync.md)
FLUSH_ROWS = 50_000
#: deletes go to `ingest.delete.delete_contacts` in groups of this many ids
DELETE_CHUNK = 1_000

_SYNC_OPTIONS = ("dry_run", "on_outcome", "specs")


def row_hash(item_json: bytes) -> str:
    """The hash of one canonical item (JSON with sorted keys): BLAKE2b, 128 bits, hex."""
    return hashlib.blake2b(item_json, digest_size=16).hexdigest()


@dataclass
class SyncReport:
    """What a sync run found and did. ``to_dict()`` holds counts only (the operator's XCom).

    ``added`` / ``changed`` / ``removed`` / ``unchanged``: the diff (events: ``added`` = new
    ``_event_id``s). ``held``: rows rejected before and unchanged since (not re-sent unless
    ``retry_rejected=True``); ``poisoned``: rows that failed ``max_attempts`` runs in a row;
    ``conflicts``: events whose ``_event_id`` was accepted with other content.
    ``requests``: write calls (pushes and deletes); ``accepted`` / ``rejected`` / ``failed``
    (transient: re-sent next run) count the rows sent and the removals deleted.
    """

    sync_id: str
    kind: str
    run_id: str
    dry_run: bool = False
    status: str = "running"
    rows: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    held: int = 0
    poisoned: int = 0
    conflicts: int = 0
    to_send: int = 0
    requests: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    deleted: int = 0
    events_accepted: int = 0
    events_rejected: int = 0
    would_fire_automations: int | None = None
    guardrail: str = "ok"
    error: str | None = None
    elapsed_s: float = 0.0
    changes: list[dict[str, Any]] = field(default_factory=list)
    ingest: IngestReport | None = None
    delete: Any = None

    def to_dict(self) -> dict[str, Any]:
        """The counts, never data (no keys, no values)."""
        out = {k: getattr(self, k) for k in (
            "sync_id", "kind", "run_id", "dry_run", "status", "rows", "added", "changed", "removed", "unchanged",
            "held", "poisoned", "conflicts", "to_send", "requests", "accepted", "rejected", "failed", "deleted",
            "events_accepted", "events_rejected", "would_fire_automations", "guardrail", "error")}
        out["elapsed_s"] = round(self.elapsed_s, 3)
        out["ingest"] = self.ingest.to_dict() if self.ingest is not None else None
        return out

    def summary(self) -> str:
        return (f"sync {self.sync_id} ({self.kind}{', DRY RUN' if self.dry_run else ''}): {self.rows} rows; "
                f"{self.added} added, {self.changed} changed, {self.removed} removed, {self.unchanged} unchanged"
                + (f", {self.conflicts} conflicts" if self.conflicts else "")
                + (f", {self.held} held (rejected, unchanged)" if self.held else "")
                + (f", {self.poisoned} poisoned" if self.poisoned else "")
                + (f"; {self.events_accepted} lifecycle events accepted" if self.events_accepted else "")
                + f"; {self.requests} write requests: {self.accepted} accepted, {self.rejected} rejected, "
                f"{self.failed} failed; guardrail {self.guardrail}")

    def __str__(self) -> str:
        return self.summary()


class SyncRun:
    def __init__(self, client: Any, kind: Kind, data: Any, *, sync_id: str, state: Any, key: str | None,
                 on_removed: OnRemoved, max_removals: float | None, max_change_ratio: float | None,
                 min_rows: int | None, dry_run: bool, retry_rejected: bool, max_attempts: int | None,
                 retention_days: float | None, sample_size: int, flush_rows: int, options: dict[str, Any],
                 on_added_event: str | None = None, on_removed_event: str | None = None,
                 event_parameters: dict[str, Any] | None = None) -> None:
        if not sync_id or not isinstance(sync_id, str) or len(sync_id) > 255:
            raise IngestSchemaError("sync_id must be a non-empty string of at most 255 characters")
        if on_removed not in ("ignore", "delete"):
            raise IngestSchemaError(f"on_removed must be 'ignore' or 'delete', got {on_removed!r}")
        if kind == "events" and on_removed != "ignore":
            raise IngestSchemaError("on_removed applies to contacts only (events are immutable)")
        if on_removed == "delete" and (key or USER_ID) != USER_ID:
            raise IngestSchemaError("on_removed='delete' needs key='_user_id' (contacts are deleted by user id)")
        bad = sorted(set(options) & set(_SYNC_OPTIONS) - {"specs"})
        if bad:
            raise IngestSchemaError(f"{', '.join(bad)}: not an ingest option of a sync (dry_run is the sync's own)")
        unknown = set(options) - IngestOptions.names()
        if unknown:
            raise IngestSchemaError(f"unknown option(s): {', '.join(sorted(unknown))}")
        for name, value in (("max_change_ratio", max_change_ratio),):
            if value is not None and not 0 <= value <= 1:
                raise IngestSchemaError(f"{name} must be between 0 and 1")
        if max_removals is not None and max_removals < 0:
            raise IngestSchemaError("max_removals must be a count (int) or a share (float between 0 and 1)")
        if kind == "events" and (on_added_event or on_removed_event):
            raise IngestSchemaError("on_added_event / on_removed_event apply to contacts only")
        if (on_added_event or on_removed_event) and (key or USER_ID) != USER_ID:
            raise IngestSchemaError("on_added_event / on_removed_event need key='_user_id'")
        self.on_added_event = on_added_event or None
        self.on_removed_event = on_removed_event or None
        self.event_parameters = dict(event_parameters or {})
        self.started_at = dt.datetime.now(dt.UTC)
        self.opts = IngestOptions(kind=kind, **options)  # validates every ingest option once
        self.client = client
        self.kind: Kind = kind
        self.data = data
        self.sync_id = sync_id
        self.state = state
        self.key = key or (USER_ID if kind == "contacts" else EVENT_ID)
        self.on_removed = on_removed
        self.max_removals = max_removals
        self.max_change_ratio = max_change_ratio
        self.min_rows = min_rows
        self.dry_run = dry_run
        self.retry_rejected = retry_rejected
        self.max_attempts = max_attempts
        self.retention_days = retention_days
        self.sample_size = sample_size
        self.flush_rows = flush_rows
        self.options = options
        self.log = options.get("logger") or log
        self.run_id = options.get("run_id") or uuid.uuid4().hex
        self.report = SyncReport(sync_id=sync_id, kind=kind, run_id=self.run_id, dry_run=dry_run)
        self._buffer: list[tuple[int, str, str]] = []
        self._send_rows = np.zeros(0, np.int64)
        self._outcomes = {"accepted": 0, "rejected": 0, "failed": 0}

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> SyncReport:
        started = time.monotonic()
        report = self.report
        with Store.open(self.state, self.sync_id, self.run_id) as store:
            self._store = store
            store.ensure_tables()
            store.acquire_lock()
            source = None
            try:
                store.tx([(f"INSERT INTO {RUNS_TABLE} (run_id, sync_id, kind, started_at, status, dry_run) "
                           f"VALUES (?, ?, ?, ?, ?, ?)",
                           (self.run_id, self.sync_id, self.kind, now_iso(), "running", int(self.dry_run)))])
                store.create_work_tables()
                specs = self.options.get("specs") or ProjectSpecs.load(
                    self.client, datasource=self.opts.datasource, kind=self.kind)
                source = open_source(self.data, batch_rows=self.opts.batch_rows,
                                     drop=ColumnMapper(self.opts.columns).drop)
                if not source.reopenable and not self.dry_run:
                    source = SpooledSource(source, directory=self.opts.spool_dir)
                self._stage(store, source, specs)
                self._plan(store)
                self._guardrails(store)
                if self.dry_run:
                    self._sample(store)
                    if self.on_added_event or self.on_removed_event:  # dated now: all inside the window
                        report.would_fire_automations = (
                            (report.added if self.on_added_event else 0)
                            + (report.removed if self.on_removed_event else 0))
                    report.status = "dry_run"
                else:
                    self._send(store, source, specs)
                    if self.on_added_event:
                        self._lifecycle_events(store, self.on_added_event, "added")
                    if self.kind == "contacts" and self.on_removed_event and self.report.removed:
                        self._lifecycle_events(store, self.on_removed_event, "removed")
                    if self.kind == "contacts":
                        self._removals(store)
                    report.status = "ok"
            except BaseException as exc:
                if report.status == "running":
                    report.status = "refused" if isinstance(exc, SyncGuardrailError) else "failed"
                report.error = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, IngestError):
                    if isinstance(exc, SyncError):
                        exc.report = report
                    else:
                        exc.sync_report = report  # type: ignore[attr-defined]
                raise
            finally:
                report.elapsed_s = time.monotonic() - started
                try:
                    self._finish(store)
                finally:
                    store.drop_work_tables()
                    store.release_lock()
                    if isinstance(source, SpooledSource):
                        source.close()
                    (self.log.info if report.status in ("ok", "dry_run") else self.log.warning)(
                        "instasent %s", report.summary())
        return report

    # -- 1. read, validate, encode, hash, stage --------------------------------------------------
    def _stage(self, store: Store, source: Any, specs: ProjectSpecs) -> None:
        opts = self.opts
        mapper = ColumnMapper(opts.columns)
        validator = Validator(specs, self.kind, event_type=opts.event_type, options=opts.coerce_options())
        encoder = opts.encoder()
        schema = pa.schema([("source_row", pa.int64()), ("row_key", pa.string()), ("row_hash", pa.string()),
                            ("item", pa.string()), ("valid", pa.int32()), ("in_window", pa.int32())])
        offset = 0
        sort_keys = orjson.OPT_SORT_KEYS
        for raw in source.batches():
            batch = mapper(raw)
            opts.check_columns(batch.schema.names)  # before anything is staged or sent
            n = batch.num_rows
            validated = validator(batch)
            valid = validated.valid
            encoded = encoder(validated, valid)
            keys: list[str | None] = [None] * n
            hashes: list[str | None] = [None] * n
            items: list[str | None] = [None] * n
            window = np.zeros(n, np.int32)
            if not valid.all():
                # an invalid row keeps its raw key, and a hash of its raw values: rejected and
                # unchanged next run, it is held instead of being validated and rejected again
                has_key = self.key in batch.schema.names
                with_keys = source_values(batch.column(self.key)).to_pylist() if has_key else None
                for i in np.flatnonzero(~valid).tolist():
                    v = with_keys[i] if with_keys is not None else None
                    keys[i] = None if v is None else str(v)[:255]
                    raw_row = batch.slice(i, 1).to_pylist()[0]
                    hashes[i] = "raw-" + row_hash(orjson.dumps(raw_row, option=sort_keys, default=str))[4:]
            for pos, (row, item) in enumerate(zip(encoded.rows.tolist(), encoded.items)):
                text = orjson.dumps(item, option=sort_keys)
                k = item.get(self.key)
                keys[row] = None if k is None else str(k)[:255]
                hashes[row] = row_hash(text)
                items[row] = text.decode()
                if encoded.in_window is not None and encoded.in_window[pos]:
                    window[row] = 1
            staged = pa.record_batch([
                pa.array(np.arange(offset, offset + n, dtype=np.int64)), pa.array(keys, pa.string()),
                pa.array(hashes, pa.string()), pa.array(items, pa.string()),
                pa.array(valid.astype(np.int32)), pa.array(window),
            ], schema=schema)
            store.load(store.stage, staged)
            offset += n
        self.report.rows = offset

    # -- 2. the diff ------------------------------------------------------------------------------
    def _plan(self, store: Store) -> None:
        r = self.report
        events = self.kind == "events"
        held = ("0" if self.retry_rejected else
                "CASE WHEN s.last_outcome = 'rejected' AND s.last_hash = t.row_hash THEN 1 ELSE 0 END")
        poisoned = ("0" if not self.max_attempts else
                    f"CASE WHEN s.last_outcome = 'failed' AND s.attempts >= {int(self.max_attempts)} "
                    f"AND s.last_hash = t.row_hash THEN 1 ELSE 0 END")
        changed = "'conflict'" if events else "'changed'"
        store.index(store.stage, "row_key")
        store.tx([(f"""CREATE TABLE {store.plan} AS
SELECT t.source_row, t.row_key, t.row_hash,
  CASE WHEN s.accepted_hash = t.row_hash THEN NULL ELSE t.item END AS item, t.valid, t.in_window,
  CASE WHEN s.row_key IS NULL THEN 0 ELSE 1 END AS known,
  CASE WHEN s.accepted_hash IS NULL THEN 'added'
       WHEN s.accepted_hash = t.row_hash THEN 'unchanged'
       ELSE {changed} END AS op,
  {held} AS held,
  {poisoned} AS poisoned
FROM {store.stage} t
LEFT JOIN {STATE_TABLE} s ON s.sync_id = ? AND s.row_key = t.row_key
WHERE t.row_key IS NULL OR t.source_row IN (
  SELECT MAX(source_row) FROM {store.stage} WHERE row_key IS NOT NULL GROUP BY row_key)""", (self.sync_id,))])
        store.index(store.plan, "source_row")
        for op, is_held, is_poisoned, count, in_window in store.query(
                f"SELECT op, held, poisoned, COUNT(*), SUM(in_window) FROM {store.plan} GROUP BY op, held, poisoned"):
            count = int(count)
            if op == "added":
                r.added += count
            elif op == "changed":
                r.changed += count
            elif op == "conflict":
                r.conflicts += count
            else:
                r.unchanged += count
            if op in ("added", "changed"):
                if int(is_held):
                    r.held += count
                elif int(is_poisoned):
                    r.poisoned += count
                else:
                    r.to_send += count
                    if events:
                        r.would_fire_automations = (r.would_fire_automations or 0) + int(in_window or 0)
        if not events:
            r.removed = int(store.scalar(
                f"SELECT COUNT(*) FROM {STATE_TABLE} s WHERE s.sync_id = ? AND s.in_model = 1 AND "
                f"s.accepted_hash IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {store.stage} t "
                f"WHERE t.row_key = s.row_key)", (self.sync_id,)) or 0)
        self.log.info("instasent sync %s diff: %d rows read; %d added, %d changed, %d removed, %d unchanged%s",
                      self.sync_id, r.rows, r.added, r.changed, r.removed, r.unchanged,
                      f", {r.conflicts} conflicts" if r.conflicts else "")

    # -- 3. guardrails ---------------------------------------------------------------------------
    def _guardrails(self, store: Store) -> None:
        r = self.report
        previous = int(store.scalar(
            f"SELECT COUNT(*) FROM {STATE_TABLE} WHERE sync_id = ? AND in_model = 1 AND accepted_hash IS NOT NULL",
            (self.sync_id,)) or 0)
        verdicts: list[tuple[str, float, str]] = []
        if self.min_rows is not None and r.rows < self.min_rows:
            verdicts.append(("min_rows", r.rows, f"min_rows={self.min_rows}: the model returned {r.rows} rows"))
        if self.max_removals is not None and self.kind == "contacts":
            limit = self.max_removals
            if isinstance(limit, float) and limit < 1:
                share = r.removed / previous if previous else 0.0
                if share > limit:
                    verdicts.append(("max_removals", share, f"max_removals={limit:.2%}: {r.removed} of {previous} "
                                     f"synced contacts ({share:.2%}) would be removed"))
            elif r.removed > limit:
                verdicts.append(("max_removals", r.removed,
                                 f"max_removals={int(limit)}: {r.removed} contacts would be removed"))
        if self.max_change_ratio is not None and previous:
            changes = r.added + r.changed + r.removed
            ratio = changes / previous
            if ratio > self.max_change_ratio:
                verdicts.append(("max_change_ratio", ratio, f"max_change_ratio={self.max_change_ratio:.2%}: "
                                 f"{changes} changes (added+changed+removed) against {previous} synced rows "
                                 f"({ratio:.2%})"))
        if not verdicts:
            return
        r.guardrail = "; ".join(v[2] for v in verdicts)
        if self.dry_run:
            self.log.warning("instasent sync %s DRY RUN: a real run would be refused: %s", self.sync_id, r.guardrail)
            r.guardrail = "would refuse: " + r.guardrail
            return
        name, measured, _ = verdicts[0]
        raise SyncGuardrailError(
            f"sync {self.sync_id!r} refused by its guardrail: {r.guardrail}. Nothing was sent and no state changed. "
            f"If the change is intended, raise the limit for one run (or run with dry_run=True to see it).",
            r, limit=name, measured=measured)

    # -- dry run: a sample of field-level changes -----------------------------------------------
    def _sample(self, store: Store) -> None:
        changes: list[dict[str, Any]] = []
        rows = store.query(
            f"SELECT p.row_key, p.op, p.item, s.accepted_values FROM {store.plan} p LEFT JOIN {STATE_TABLE} s "
            f"ON s.sync_id = ? AND s.row_key = p.row_key WHERE p.op IN ('added', 'changed', 'conflict') "
            f"ORDER BY p.source_row LIMIT {int(self.sample_size)}", (self.sync_id,))
        for key, op, item, old in rows:
            new_values = json.loads(item) if item else {}
            old_values = json.loads(old) if old else {}
            for name in sorted(set(new_values) | set(old_values)):
                if new_values.get(name) != old_values.get(name):
                    changes.append({"key": key, "operation": op, "field": name, "old": old_values.get(name),
                                    "new": new_values.get(name)})
        if self.kind == "contacts":
            for (key,) in store.query(
                    f"SELECT s.row_key FROM {STATE_TABLE} s WHERE s.sync_id = ? AND s.in_model = 1 AND "
                    f"s.accepted_hash IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {store.stage} t "
                    f"WHERE t.row_key = s.row_key) ORDER BY s.row_key LIMIT {int(self.sample_size)}",
                    (self.sync_id,)):
                changes.append({"key": key, "operation": "removed", "field": None, "old": None, "new": None})
        self.report.changes = changes

    # -- 4. send ---------------------------------------------------------------------------------
    def _send(self, store: Store, source: Any, specs: ProjectSpecs) -> None:
        r = self.report
        statements: list[tuple[str, Sequence[Any]] | str] = [
            (f"INSERT INTO {STATE_TABLE} (sync_id, row_key, in_model, attempts) "
             f"SELECT ?, row_key, 1, 0 FROM {store.plan} WHERE known = 0 AND row_key IS NOT NULL", (self.sync_id,)),
        ]
        if self.kind == "events" and self.report.conflicts:
            statements.append((
                f"INSERT INTO {CHANGELOG_TABLE} (run_id, sync_id, row_key, operation, outcome, reason, logged_at) "
                f"SELECT ?, ?, row_key, 'conflict', 'skipped', ?, ? FROM {store.plan} WHERE op = 'conflict'",
                (self.run_id, self.sync_id, "this _event_id was accepted before with other content; events are "
                 "immutable, so it is not re-sent (give the corrected event a new _event_id)", now_iso())))
        if self.kind == "contacts":  # keys back in the model
            statements.append((f"UPDATE {STATE_TABLE} SET in_model = 1 WHERE sync_id = ? AND in_model = 0 AND "
                               f"row_key IN (SELECT row_key FROM {store.plan})", (self.sync_id,)))
        store.tx(statements)
        send = "op IN ('added', 'changed') AND held = 0 AND poisoned = 0"
        self._send_rows = store.int_column(store.plan, "source_row", send)
        if not len(self._send_rows):
            return
        options = dict(self.options)
        options.update(specs=specs, on_outcome=self._on_outcome, run_id=self.run_id)
        send_rows = self._send_rows
        report: IngestReport | None = None
        try:
            report = ingest(self.client, self.kind, self._filtered(source, send_rows), **options)
        except IngestError as exc:
            report = exc.report if isinstance(exc.report, IngestReport) else None
            raise
        finally:
            self._flush(store)
            if report is not None:
                self._remap(report)
                r.ingest = report
                r.requests += report.requests
            counts = self._outcomes
            r.accepted += counts["accepted"]
            r.rejected += counts["rejected"]
            # transient failures, and rows the run stopped before deciding: both re-sent next run
            r.failed += len(send_rows) - counts["accepted"] - counts["rejected"]
            self._log_undecided(store)

    def _filtered(self, source: Any, send_rows: np.ndarray) -> Iterator[pa.RecordBatch]:
        """The source again, only the rows to send (raw batches: the engine renames them itself)."""
        offset = 0
        for raw in source.batches():
            n = raw.num_rows
            lo, hi = np.searchsorted(send_rows, [offset, offset + n])
            if hi > lo:
                take = send_rows[lo:hi] - offset
                yield raw if hi - lo == n else raw.take(pa.array(take))
            offset += n

    def _remap(self, report: IngestReport) -> None:
        """The rejects' ``source_row`` numbered in the whole input (the engine saw only the rows sent)."""
        rejects = report.rejects
        if rejects is not None and len(rejects) and len(self._send_rows):
            rows = rejects["source_row"].to_numpy(dtype=np.int64)
            ok = (rows >= 0) & (rows < len(self._send_rows))
            rejects.loc[ok, "source_row"] = self._send_rows[rows[ok]]

    def _on_outcome(self, outcome: str, rows: Sequence[int], reasons: Sequence[str]) -> None:
        mapped = self._send_rows[np.asarray(rows, dtype=np.int64)].tolist()
        self._outcomes[outcome] += len(mapped)
        self._buffer.extend(zip(mapped, [outcome] * len(mapped), [str(x)[:2000] for x in reasons]))
        if len(self._buffer) >= self.flush_rows:
            self._flush(self._store)

    _store: Store

    def _flush(self, store: Store) -> None:
        """Apply the buffered outcomes to the state and the changelog, in one transaction."""
        if not self._buffer:
            return
        buffer, self._buffer = self._buffer, []
        batch = pa.record_batch([pa.array([b[0] for b in buffer], pa.int64()),
                                 pa.array([b[1] for b in buffer], pa.string()),
                                 pa.array([b[2] or None for b in buffer], pa.string())],
                                names=["source_row", "outcome", "reason"])
        store.tx([f"DELETE FROM {store.out}"])
        store.load(store.out, batch)
        now, run, sid = now_iso(), self.run_id, self.sync_id
        join = f"FROM {store.out} o JOIN {store.plan} p ON p.source_row = o.source_row"
        acc = "o.outcome = 'accepted'"
        # one UPDATE for the three outcomes: each is a scan of the state table
        store.tx([
            (f"UPDATE {STATE_TABLE} AS s SET "
             f"accepted_hash = CASE WHEN {acc} THEN p.row_hash ELSE s.accepted_hash END, "
             f"accepted_values = CASE WHEN {acc} THEN p.item ELSE s.accepted_values END, "
             f"accepted_at = CASE WHEN {acc} THEN ? ELSE s.accepted_at END, "
             f"accepted_run_id = CASE WHEN {acc} THEN ? ELSE s.accepted_run_id END, "
             f"last_hash = p.row_hash, last_outcome = o.outcome, last_reason = o.reason, last_run_id = ?, "
             f"attempts = CASE WHEN o.outcome = 'failed' THEN s.attempts + 1 ELSE 0 END "
             f"{join} WHERE s.sync_id = ? AND s.row_key = p.row_key", (now, run, run, sid)),
            (f"INSERT INTO {CHANGELOG_TABLE} (run_id, sync_id, row_key, operation, outcome, reason, logged_at) "
             f"SELECT ?, ?, p.row_key, p.op, o.outcome, o.reason, ? {join}", (run, sid, now)),
        ])

    def _log_undecided(self, store: Store) -> None:
        """Rows to send that got no outcome (the run stopped first): ``failed`` in the changelog."""
        if self.report.failed <= self._outcomes["failed"]:
            return
        store.tx([(
            f"INSERT INTO {CHANGELOG_TABLE} (run_id, sync_id, row_key, operation, outcome, reason, logged_at) "
            f"SELECT ?, ?, p.row_key, p.op, 'failed', 'not sent: the run stopped before this row', ? "
            f"FROM {store.plan} p WHERE p.op IN ('added', 'changed') AND p.held = 0 AND p.poisoned = 0 AND NOT EXISTS "
            f"(SELECT 1 FROM {CHANGELOG_TABLE} c WHERE c.run_id = ? AND c.sync_id = ? AND c.row_key = p.row_key)",
            (self.run_id, self.sync_id, now_iso(), self.run_id, self.sync_id))])

    # -- lifecycle events -----------------------------------------------------------------------
    def lifecycle_event_id(self, event_type: str, key: str) -> str:
        """``s1-`` + 32 hex digits: BLAKE2b over (sync id, key, run id, event type), length-prefixed."""
        h = hashlib.blake2b(digest_size=16)
        for part in (self.sync_id, key, self.run_id, event_type):
            raw = part.encode()
            h.update(len(raw).to_bytes(4, "big") + raw)
        return "s1-" + h.hexdigest()

    def _lifecycle_keys(self, store: Store, which: str) -> Iterator[list[str]]:
        """The keys accepted as added in this run, or removed from the model, 10,000 at a time (keyset)."""
        if which == "added":
            sql = (f"SELECT row_key FROM {CHANGELOG_TABLE} WHERE run_id = ? AND sync_id = ? AND operation = 'added' "
                   f"AND outcome = 'accepted' AND row_key > ? ORDER BY row_key LIMIT 10000")
            params: tuple[Any, ...] = (self.run_id, self.sync_id)
        else:
            sql = (f"SELECT s.row_key FROM {STATE_TABLE} s WHERE s.sync_id = ? AND s.in_model = 1 AND "
                   f"s.accepted_hash IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {store.stage} t "
                   f"WHERE t.row_key = s.row_key) AND s.row_key > ? ORDER BY s.row_key LIMIT 10000")
            params = (self.sync_id,)
        last = ""
        while True:
            keys = [str(r[0]) for r in store.query(sql, (*params, last))]
            if not keys:
                return
            yield keys
            last = keys[-1]

    def _lifecycle_events(self, store: Store, event_type: str, which: str) -> None:
        """One event per contact that entered (``added``, accepted) or left the model, dated the run's start."""
        from ..ingest.engine import write_events

        date = pa.scalar(self.started_at, pa.timestamp("ms", tz="UTC"))

        def batches() -> Iterator[pa.RecordBatch]:
            for keys in self._lifecycle_keys(store, which):
                columns: dict[str, Any] = {
                    USER_ID: pa.array(keys, pa.string()),
                    EVENT_ID: pa.array([self.lifecycle_event_id(event_type, k) for k in keys], pa.string()),
                    "_event_date": pa.array([date.as_py()] * len(keys), pa.timestamp("ms", tz="UTC")),
                }
                for name, value in self.event_parameters.items():
                    columns[name] = pa.array([value] * len(keys))
                yield pa.record_batch(list(columns.values()), names=list(columns))

        options = {k: v for k, v in self.options.items() if k in (
            "datasource", "max_in_flight", "max_items", "max_request_bytes", "progress_interval", "logger")}
        report = write_events(self.client, batches(), event_type=event_type, on_invalid="skip", run_id=self.run_id,
                              **options)
        self.report.requests += report.requests
        self.report.events_accepted += report.accepted
        self.report.events_rejected += report.rejected
        if report.rejected:
            self.log.warning("instasent sync %s: %d %s event(s) of type %s rejected: %s", self.sync_id,
                             report.rejected, which, event_type,
                             "; ".join(report.rejects["reason"].astype(str).head(3)))

    # -- 5. removals -----------------------------------------------------------------------------
    def _removals(self, store: Store) -> None:
        r = self.report
        if not r.removed:
            return
        gone = (f"FROM {STATE_TABLE} s WHERE s.sync_id = ? AND s.in_model = 1 AND s.accepted_hash IS NOT NULL "
                f"AND NOT EXISTS (SELECT 1 FROM {store.stage} t WHERE t.row_key = s.row_key)")
        now = now_iso()
        if self.on_removed == "ignore":
            store.tx([
                (f"INSERT INTO {CHANGELOG_TABLE} (run_id, sync_id, row_key, operation, outcome, reason, logged_at) "
                 f"SELECT ?, ?, s.row_key, 'removed', 'ignored', NULL, ? {gone}",
                 (self.run_id, self.sync_id, now, self.sync_id)),
                (f"UPDATE {STATE_TABLE} SET in_model = 0, last_run_id = ? WHERE sync_id = ? AND row_key IN "
                 f"(SELECT s.row_key {gone})", (self.run_id, self.sync_id, self.sync_id)),
            ])
            return
        from ..ingest.delete import delete_contacts

        chunks = (page[start:start + DELETE_CHUNK] for page in self._lifecycle_keys(store, "removed")
                  for start in range(0, len(page), DELETE_CHUNK))
        for chunk in chunks:  # a page of keys at a time: memory does not grow with the removals
            failures: dict[str, str] = {}
            try:
                dreport = delete_contacts(self.client, chunk, max_in_flight=self.opts.max_in_flight,
                                          datasource=self.opts.datasource, progress_interval=0, logger=self.log)
            except IngestError as exc:
                dreport = exc.report
                failures = dict(dreport.failures)
            r.delete = dreport
            r.requests += dreport.requested
            ok = [k for k in chunk if k not in failures]
            r.deleted += len(ok)
            r.accepted += len(ok)
            r.failed += len(failures)
            outcomes = pa.record_batch([
                pa.array(chunk, pa.string()),
                pa.array(["failed" if k in failures else "accepted" for k in chunk], pa.string()),
                pa.array([failures[k][:2000] if k in failures else None for k in chunk], pa.string()),
            ], names=["row_key", "outcome", "reason"])
            store.tx([f"DELETE FROM {store.removed}"])
            store.load(store.removed, outcomes)
            join = f"FROM {store.removed} o WHERE s.sync_id = ? AND s.row_key = o.row_key AND o.outcome = ?"
            store.tx([
                (f"UPDATE {STATE_TABLE} AS s SET in_model = 0, accepted_hash = NULL, accepted_values = NULL, "
                 f"last_outcome = 'removed', last_reason = NULL, last_run_id = ? {join}",
                 (self.run_id, self.sync_id, "accepted")),
                (f"UPDATE {STATE_TABLE} AS s SET last_outcome = 'failed', last_reason = o.reason, last_run_id = ?, "
                 f"attempts = s.attempts + 1 {join}", (self.run_id, self.sync_id, "failed")),
                (f"INSERT INTO {CHANGELOG_TABLE} (run_id, sync_id, row_key, operation, outcome, reason, logged_at) "
                 f"SELECT ?, ?, o.row_key, 'removed', o.outcome, o.reason, ? FROM {store.removed} o",
                 (self.run_id, self.sync_id, now)),
            ])

    # -- 6. the runs table, retention ------------------------------------------------------------
    def _finish(self, store: Store) -> None:
        r = self.report
        store.tx([(
            f"UPDATE {RUNS_TABLE} SET finished_at = ?, status = ?, rows_read = ?, added = ?, changed = ?, "
            f"removed = ?, unchanged = ?, held = ?, conflicts = ?, requests = ?, accepted = ?, rejected = ?, "
            f"failed = ?, guardrail = ?, error = ? WHERE run_id = ?",
            (now_iso(), r.status, r.rows, r.added, r.changed, r.removed, r.unchanged, r.held, r.conflicts,
             r.requests, r.accepted, r.rejected, r.failed, r.guardrail, (r.error or None) and r.error[:4000],
             self.run_id))])
        if self.retention_days is not None and not self.dry_run:
            cutoff = (time.time() - float(self.retention_days) * 86400)
            iso = dt.datetime.fromtimestamp(cutoff, dt.UTC).isoformat(timespec="milliseconds")
            iso = iso.replace("+00:00", "Z")
            store.tx([
                (f"DELETE FROM {CHANGELOG_TABLE} WHERE sync_id = ? AND logged_at < ?", (self.sync_id, iso)),
                (f"DELETE FROM {RUNS_TABLE} WHERE sync_id = ? AND started_at < ?", (self.sync_id, iso)),
            ])


# ---------------------------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------------------------
def sync_contacts(client: Any, data: Any, *, sync_id: str, state: Any, on_removed: OnRemoved = "ignore",
                  max_removals: float | None = None, max_change_ratio: float | None = None,
                  min_rows: int | None = None, dry_run: bool = False, key: str | None = None,
                  retry_rejected: bool = False, max_attempts: int | None = None,
                  retention_days: float | None = None, sample_size: int = 20, flush_rows: int = FLUSH_ROWS,
                  on_added_event: str | None = None, on_removed_event: str | None = None,
                  event_parameters: dict[str, Any] | None = None, **ingest_options: Any) -> SyncReport:
    """Upsert only the contacts that changed since the API last accepted them (docs/sync.md).

    Args:
        data: anything `ingest.engine.write_contacts` takes.
        sync_id: names the sync; its state is separate from every other sync's.
        state: a DuckDB file path (created if missing), a DB-API or SQLAlchemy connection, or a
            common-sql ``DbApiHook``: where the state, runs and changelog tables live.
        on_removed: ``"ignore"`` (default) or ``"delete"`` the contacts that left the model.
        max_removals: refuse the run when more contacts would be removed: a count (``int``) or
            a share of the synced contacts (``float`` below 1).
        max_change_ratio: refuse when (added + changed + removed) / synced contacts is higher
            (not checked on a first run, when nothing is synced yet).
        min_rows: refuse when the model has fewer rows.
        dry_run: compute the diff and a sample of field-level changes; send nothing, change no state.
        key: the key column (default ``_user_id``).
        retry_rejected: re-send rows the API rejected even if they did not change.
        max_attempts: a row whose request failed this many runs in a row is held as ``poisoned``.
        retention_days: delete this sync's runs and changelog rows older than this.
        on_added_event: an event type: each contact added (and accepted) in this run also gets
            an event of this type, dated the run's start, with a deterministic ``_event_id``
            (sync id, key, run id): how an audience-entered journey starts.
        on_removed_event: an event type sent for each contact that left the model (before it is deleted).
        event_parameters: constant parameters of those events (``{"segment": "vip"}``).
        ingest_options: the ingest engine's options (docs/ingest.md), except ``dry_run``.

    Raises `errors.SyncGuardrailError` (nothing sent), `errors.SyncLockedError`
    (another run holds the sync) or the engine's `ingest.errors.IngestError` (with
    ``sync_report``).
    """
    return SyncRun(client, "contacts", data, sync_id=sync_id, state=state, key=key, on_removed=on_removed,
                   max_removals=max_removals, max_change_ratio=max_change_ratio, min_rows=min_rows,
                   dry_run=dry_run, retry_rejected=retry_rejected, max_attempts=max_attempts,
                   retention_days=retention_days, sample_size=sample_size, flush_rows=flush_rows,
                   options=ingest_options, on_added_event=on_added_event, on_removed_event=on_removed_event,
                   event_parameters=event_parameters).run()


def sync_events(client: Any, data: Any, *, sync_id: str, state: Any, event_type: str | None = None,
                dry_run: bool = False, retry_rejected: bool = False, max_attempts: int | None = None,
                min_rows: int | None = None, retention_days: float | None = None, sample_size: int = 20,
                flush_rows: int = FLUSH_ROWS, **ingest_options: Any) -> SyncReport:
    """Send only the events whose ``_event_id`` (given or derived) was never accepted.

    An ``_event_id`` accepted before with other content is a *conflict*: counted, logged, not
    re-sent (events are immutable). Arguments as `sync_contacts`.
    """
    if event_type is not None:
        ingest_options["event_type"] = event_type
    return SyncRun(client, "events", data, sync_id=sync_id, state=state, key=None, on_removed="ignore",
                   max_removals=None, max_change_ratio=None, min_rows=min_rows, dry_run=dry_run,
                   retry_rejected=retry_rejected, max_attempts=max_attempts, retention_days=retention_days,
                   sample_size=sample_size, flush_rows=flush_rows, options=ingest_options).run()
