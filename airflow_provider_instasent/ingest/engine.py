"""The ingest engine: source → rename → validate → encode → chunk → send → report.

One implementation behind ``write_contacts``, ``write_events``, the Airflow
operator and the benchmarks. See docs/ingest.md for every option.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..client.endpoints import MAX_ITEMS_PER_PUSH
from ..client.errors import InstasentError, LongWaitError
from ..progress import Progress
from . import consent
from .coerce import CoerceOptions, source_values
from .encode import DEFAULT_MAX_REQUEST_BYTES, Chunker, EncodedBatch, Encoder, Request
from .errors import (
    AutomationsGuardError,
    IngestError,
    IngestSchemaError,
    RejectedRowsError,
    RequestFailedError,
    SourceReadError,
)
from .existence import VERIFY_WAIT_S, ContactCheck, ContactsFrom, read_back
from .idempotency import EventIdDeriver, FirstRowWins
from .phones import check_region
from .report import IngestReport, RejectsSink
from .rowerrors import RowErrors
from .sender import Outcome, Sender, SenderClosed
from .sources import DEFAULT_BATCH_ROWS, ColumnMapper, Source, SpooledSource, open_source
from .specs import EVENT_ID, EVENT_PARAMETERS, USER_DATA, USER_ID, Kind, ProjectSpecs
from .validate import Validated, Validator

log = logging.getLogger("airflow_provider_instasent.ingest")

OnInvalid = Literal["fail", "skip", "dead_letter"]
Automations = Literal["allow", "warn", "refuse"]
#: ``reject_row``: a row with an invalid value is rejected whole; ``drop_value``: the invalid
#: value of an optional field is left out of the item (still a reject entry, stage
#: ``"dropped"``) and the row is sent.
InvalidValues = Literal["reject_row", "drop_value"]

#: What `IngestOptions.on_outcome` receives: ``(outcome, source_rows, reasons)`` with
#: ``outcome`` one of `OUTCOMES`, the 0-based ``source_row`` numbers (the rejects' numbering)
#: and one reason per row (empty for accepted rows).
OutcomeCallback = Callable[[str, Sequence[int], Sequence[str]], None]

#: ``accepted``: the API accepted the row; ``rejected``: the loader or the API refused it (a
#: problem of the row: re-sending it unchanged fails the same way); ``failed``: its request failed
#: after the client's retries (transient: 5xx, lost connection, 429; the report counts the row
#: as ``unknown`` when the API may have stored it, else as rejected). Rows never sent (skipped)
#: get no call.
OUTCOMES = ("accepted", "rejected", "failed")

#: ``max_rejected_ratio`` is checked while the run goes once this many rows were read, and
#: always at the end (so that one bad row among the first ten does not stop a big run).
RATIO_MIN_ROWS = 1000
#: Events per part of a batch sent once their contacts are checked (see ``_checked_parts``).
CHECK_PART = 500
#: The first batch of a run is cut to this many rows (zero-copy), so that the first requests
#: leave once 1,000 rows are validated and encoded instead of a whole ``batch_rows``.
FIRST_BATCH_ROWS = 1_000
#: Contact rows held back for a busy user (``Chunker`` ``hold_back``) before the engine waits.
HOLD_LIMIT = 20_000


@dataclass(frozen=True)
class IngestOptions:
    """Every option of an ingest run (validated on construction). See docs/ingest.md."""

    kind: Kind
    event_type: str | None = None
    columns: Mapping[str, str | None] | None = None
    on_invalid: OnInvalid = "fail"
    max_rejected_ratio: float | None = None
    dry_run: bool = False
    automations: Automations = "allow"
    nulls: Literal["omit", "null"] = "omit"
    #: per field: ``"leave"`` (a null keeps the stored value) or ``"clear"``; consent fields default to leave
    null_policy: Mapping[str, Literal["leave", "clear"]] | None = None
    #: the ``_accepts_marketing_*`` / ``_is_subscribed_*`` fields this run may write (others are refused)
    consent_fields: Sequence[str] | None = None
    #: ``"e164"``: phone fields normalised to E.164 (``default_region`` for numbers without a prefix)
    phones: Literal["check", "e164"] = "check"
    default_region: str | None = None
    assume_timezone: str | None = None
    event_id_fields: Sequence[str] | None = None
    unknown_columns: Literal["error", "ignore", "send"] = "error"
    rejects_path: Any = None
    rejects_table: str | None = None
    rejects_conn: Any = field(default=None, compare=False)
    max_rejects_in_memory: int = 100_000
    max_in_flight: int = 16
    max_items: int = MAX_ITEMS_PER_PUSH
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    batch_rows: int = DEFAULT_BATCH_ROWS
    preflight: bool | None = None
    progress_interval: float = 5.0
    datasource: str | None = None
    specs: ProjectSpecs | None = None
    spool_dir: str | None = None
    run_id: str | None = None
    logger: Any = field(default=None, compare=False)
    #: called in the run's thread with each decided row's outcome (see `OutcomeCallback`);
    #: how the stateful sync learns which rows the API accepted (docs/sync.md)
    on_outcome: OutcomeCallback | None = field(default=None, compare=False)
    #: push with ``?_sync``: each write is applied before its response (set it on contacts whose
    #: events follow; docs/ingest.md "No event lost in silence")
    sync: bool = False
    #: events: check that each event's contact exists before sending it (docs/ingest.md)
    check_contacts: bool = True
    #: events: what earlier contacts runs of this run or chain wrote and rejected
    #: (``existence.ContactsFrom.read``: an IngestReport, rejects or their ``rejects_path``)
    contacts_from: Any = field(default=None, compare=False)
    invalid_values: InvalidValues = "reject_row"
    #: events: an event whose contact does not exist carries ``_user_data: {"_user_id": ...}``
    #: and so creates it, instead of being a reject (contacts rejected in the chain stay rejects)
    create_missing_contacts: bool = False
    #: read back through public endpoints, after the run, whether what was accepted is stored
    verify: bool = False
    #: how long the read-back asks again for what it has not found yet (queued writes), seconds
    verify_wait_s: float = VERIFY_WAIT_S

    def __post_init__(self) -> None:
        def bad(msg: str) -> IngestSchemaError:
            return IngestSchemaError(msg)

        if self.kind not in ("contacts", "events"):
            raise bad(f"kind must be 'contacts' or 'events', got {self.kind!r}")
        if self.kind == "contacts" and self.event_type:
            raise bad("event_type applies to events only")
        if self.on_invalid not in ("fail", "skip", "dead_letter"):
            raise bad(f"on_invalid must be 'fail', 'skip' or 'dead_letter', got {self.on_invalid!r}")
        if self.on_invalid == "dead_letter" and not (self.rejects_path or self.rejects_table):
            raise bad("on_invalid='dead_letter' needs rejects_path= or rejects_table= (with rejects_conn=)")
        if self.rejects_table and self.rejects_conn is None:
            raise bad("rejects_table needs rejects_conn: a common-sql DbApiHook, a DB-API connection or a "
                      "SQLAlchemy connection (the operator's rejects_conn_id resolves to one)")
        if self.rejects_table:
            from ..client.errors import InstasentConfigError
            from ..io.sql import TableName

            try:
                TableName.parse(self.rejects_table)
            except InstasentConfigError as exc:
                raise bad(f"rejects_table: {exc}") from None
        if self.max_rejected_ratio is not None and not 0 <= self.max_rejected_ratio <= 1:
            raise bad("max_rejected_ratio must be between 0 and 1")
        if self.automations not in ("allow", "warn", "refuse"):
            raise bad(f"automations must be 'allow', 'warn' or 'refuse', got {self.automations!r}")
        if self.automations == "refuse" and self.preflight is False:
            raise bad("automations='refuse' checks the whole input before sending anything: it needs preflight")
        if self.nulls not in ("omit", "null"):
            raise bad(f"nulls must be 'omit' or 'null', got {self.nulls!r}")
        consent.check_options(self.consent_fields, self.null_policy)
        if self.phones not in ("check", "e164"):
            raise bad(f"phones must be 'check' or 'e164', got {self.phones!r}")
        try:
            check_region(self.default_region)
        except ValueError as exc:
            raise bad(str(exc)) from None
        if self.unknown_columns not in ("error", "ignore", "send"):
            raise bad(f"unknown_columns must be 'error', 'ignore' or 'send', got {self.unknown_columns!r}")
        if not 1 <= self.max_items <= MAX_ITEMS_PER_PUSH:
            raise bad(f"max_items must be between 1 and {MAX_ITEMS_PER_PUSH}")
        if self.max_request_bytes < 1024:
            raise bad("max_request_bytes must be at least 1024")
        if self.max_in_flight < 1:
            raise bad("max_in_flight must be at least 1")
        if self.batch_rows < 1:
            raise bad("batch_rows must be at least 1")
        if self.invalid_values not in ("reject_row", "drop_value"):
            raise bad(f"invalid_values must be 'reject_row' or 'drop_value', got {self.invalid_values!r}")
        if self.contacts_from is not None and self.kind != "events":
            raise bad("contacts_from applies to events only")
        if self.create_missing_contacts and (self.kind != "events" or not self.check_contacts):
            raise bad("create_missing_contacts applies to events, with check_contacts=True")
        if self.contacts_from is not None and not self.check_contacts:
            raise bad("contacts_from needs check_contacts=True (it is what the check uses)")
        if self.verify_wait_s < 0:
            raise bad("verify_wait_s must be at least 0")
        if self.verify and self.dry_run:
            raise bad("verify=True reads back what a run stored: a dry run stores nothing")
        if self.event_id_fields is not None and self.kind != "events":
            raise bad("event_id_fields applies to events only")
        if self.assume_timezone:
            try:
                import zoneinfo

                if self.assume_timezone.upper() != "UTC":
                    zoneinfo.ZoneInfo(self.assume_timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise bad(f"assume_timezone {self.assume_timezone!r} is not a known IANA time zone") from None

    @property
    def run_preflight(self) -> bool:
        if self.preflight is not None:
            return self.preflight
        return self.automations == "refuse"

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    def coerce_options(self) -> CoerceOptions:
        return CoerceOptions(assume_timezone=self.assume_timezone, unknown_columns=self.unknown_columns,
                             phones=self.phones, default_region=self.default_region)

    def encoder(self) -> Encoder:
        return Encoder(self.kind, nulls=self.nulls, deriver=EventIdDeriver(self.event_id_fields),
                       null_policy=self.null_policy)

    def check_columns(self, names: Sequence[str]) -> None:
        """Refuse columns this run must not write (consent fields not in ``consent_fields``)."""
        if self.kind == "contacts":
            consent.check_columns(names, self.consent_fields)


#: Every option's default: the operators take theirs from here, so a DAG and a notebook agree.
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(IngestOptions)}


def _user_id_strings(batch: pa.RecordBatch, rows: np.ndarray | None = None, *, distinct: bool = False
                     ) -> list[Any]:
    """The raw ``_user_id`` of each row (of ``rows`` only, when given), as text (for rejects),
    or None; ``distinct``: each value once (Arrow's ``unique`` before the conversion: what the
    contact check looks up)."""
    n = batch.num_rows if rows is None else len(rows)
    unknown: list[Any] = [] if distinct else [None] * n
    if USER_ID not in batch.schema.names:
        return unknown
    col = source_values(batch.column(USER_ID))
    try:
        if rows is not None:
            col = col.take(pa.array(rows, type=pa.int64()))
        if distinct:
            col = pc.unique(col)
        if pa.types.is_floating(col.type):
            return [None if v is None or v != v else (str(int(v)) if float(v).is_integer() else str(v))
                    for v in col.to_pylist()]
        return [None if v is None else str(v) for v in col.to_pylist()]
    except Exception:  # a struct or another odd type: leave the id out of the rejects
        return unknown


def _counts(report: IngestReport) -> str:
    return f"{report.accepted} accepted, {report.rejected} rejected, {report.requests} requests"


def _take(encoded: EncodedBatch, keep: Sequence[int]) -> EncodedBatch:
    """The items of ``encoded`` at positions ``keep``."""
    idx = np.asarray(keep, dtype=np.int64)
    return EncodedBatch(encoded.rows[idx], [encoded.items[i] for i in keep], [encoded.user_ids[i] for i in keep],
                        None if encoded.in_window is None else encoded.in_window[idx])


def _omit_values(encoded: EncodedBatch, dropped: Mapping[int, list[str]]) -> None:
    """Leave the dropped values out of their items (``invalid_values="drop_value"``)."""
    for row, item in zip(encoded.rows.tolist(), encoded.items):
        for name in dropped.get(row, ()):
            head, _, rest = name.partition(".")
            if rest and head in (EVENT_PARAMETERS, USER_DATA) and isinstance(item.get(head), dict):
                item[head].pop(rest, None)
                if head == USER_DATA and not item[head]:
                    del item[head]
            else:
                item.pop(name, None)


class IngestRun:
    """One run of the engine. Use ``ingest``, ``write_contacts`` or ``write_events``."""

    def __init__(self, client: Any, data: Any, options: IngestOptions) -> None:
        self.client = client
        self.data = data
        self.opts = options
        self.log = options.logger or log
        self.report = IngestReport(options.kind, dry_run=options.dry_run)
        if options.kind == "events":
            self.report.would_fire_automations = 0
        self.mapper = ColumnMapper(options.columns)
        self.rejects = RejectsSink(
            path=options.rejects_path, table=options.rejects_table, db=options.rejects_conn,
            max_in_memory=options.max_rejects_in_memory, run_id=options.run_id or uuid.uuid4().hex,
        )
        self.report.rejects_path = str(options.rejects_path) if options.rejects_path else None
        self.report.rejects_table = options.rejects_table
        self._stop: IngestError | LongWaitError | None = None
        self._warned_window = False
        self.sender: Sender | None = None
        self.check: ContactCheck | None = None
        self._chunker: Chunker | None = None
        self._released: deque[Request] = deque()  # requests filled by held-back rows, to send
        if options.kind == "events" and not options.check_contacts:
            self.report.unverified = 0
        if options.kind == "contacts" and options.sync and not options.dry_run:
            self.report.written_user_ids = set()
        #: rows carrying ``_user_data`` (their event creates the contact), kept with the check off
        self._vouched_rows: set[int] = set()
        #: contacts this run creates through ``_user_data`` (``create_missing_contacts``)
        self._created: set[str] = set()
        #: offsets of the batches whose users ``_looked_ahead`` started looking up
        self._looked_ahead_at: set[int] = set()
        #: verify=True: source row -> (user id, event id) of what was sent, then of what was accepted
        self._sent_ids: dict[int, tuple[str, str | None]] = {}
        self._accepted_ids: dict[int, tuple[str, str | None]] = {}

    # -- public -------------------------------------------------------------------------------
    def run(self) -> IngestReport:
        opts, report = self.opts, self.report
        started = time.monotonic()
        report.started_at = time.time()
        stats_before = self._stats()
        source: Source | None = None
        try:
            specs = opts.specs or ProjectSpecs.load(self.client, datasource=opts.datasource, kind=opts.kind,
                                                       event_type=opts.event_type)
            validator = Validator(specs, opts.kind, event_type=opts.event_type, options=opts.coerce_options())
            encoder = opts.encoder()
            source = open_source(self.data, batch_rows=opts.batch_rows, drop=self.mapper.drop)
            report.total_rows = source.total_rows
            self.log.info("instasent %s ingest from %s%s%s", opts.kind, source.name,
                          f" ({source.total_rows} rows)" if source.total_rows is not None else "",
                          " [DRY RUN]" if opts.dry_run else "")
            if opts.run_preflight:
                if not source.reopenable:
                    source = SpooledSource(source, directory=opts.spool_dir)
                self._preflight(source, validator)
            if opts.kind == "events" and opts.check_contacts:
                self.check = ContactCheck(self.client, opts.datasource, max_in_flight=opts.max_in_flight,
                                          contacts_from=ContactsFrom.read(opts.contacts_from))
            self._send_pass(source, validator, encoder, counted=opts.run_preflight)
            if opts.verify:
                self._verify()
            report.status = "ok"
        except IngestError as exc:
            report.status = "failed"
            report.error = str(exc)
            exc.report = report
            raise
        except BaseException as exc:
            report.status = "failed"
            report.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if report.status != "ok":
                # everything read and not decided (accepted, rejected, unknown) was not sent
                report.skipped = max(0, report.rows - report.accepted - report.rejected - report.unknown)
            if self.check is not None:
                self.check.close()
                report.contact_check_calls = self.check.calls
            report.elapsed_s = time.monotonic() - started
            report.finished_at = time.time()
            stats_after = self._stats()
            report.retries = stats_after.get("retries", 0) - stats_before.get("retries", 0)
            before = stats_before.get("statuses", {})
            report.http_statuses = {
                int(k): v - before.get(k, 0) for k, v in stats_after.get("statuses", {}).items()
                if v - before.get(k, 0) > 0
            }
            try:
                self.rejects.close()
            finally:
                report.rejects = self.rejects.dataframe()
                report.reject_entries = self.rejects.entries
                report.rejects_truncated = self.rejects.truncated
                if isinstance(source, SpooledSource):
                    source.close()
            accounted = report.accepted + report.rejected + report.unknown + report.skipped
            if report.status == "ok" and accounted != report.rows:
                self.log.error("instasent ingest accounting mismatch: %d rows but %d accepted+rejected+unknown+"
                               "skipped", report.rows, accounted)
            (self.log.info if report.status == "ok" else self.log.warning)(
                "instasent ingest %s: %s", report.status, report.summary())
        return report

    # -- helpers ------------------------------------------------------------------------------
    def _first_wins(self) -> FirstRowWins | None:
        """The ``_event_id`` collision check of one pass (events only; see ``idempotency``)."""
        if self.opts.kind != "events":
            return None
        return FirstRowWins(EventIdDeriver(self.opts.event_id_fields), directory=self.opts.spool_dir)

    def _notify(self, outcome: str, rows: Sequence[int], reasons: Sequence[str] | None = None) -> None:
        """Tell ``on_outcome`` (if any) what became of ``rows``."""
        if self.opts.on_outcome is not None and len(rows):
            self.opts.on_outcome(outcome, list(rows), list(reasons) if reasons is not None else [""] * len(rows))

    def _stats(self) -> dict[str, Any]:
        stats = getattr(self.client, "stats", None)
        return stats.snapshot() if stats is not None else {}

    def _batches(self, source: Source) -> Iterator[tuple[int, pa.RecordBatch]]:
        offset = 0
        batches = iter(source.batches())
        while True:
            try:
                raw = next(batches)
            except StopIteration:
                return
            except IngestError:
                raise
            except Exception as exc:  # the source, not the data: name it and keep the report
                raise SourceReadError(
                    f"cannot read {source.name} after {offset} rows: {type(exc).__name__}: {exc}", self.report
                ) from exc
            batch = self.mapper(raw)
            self.opts.check_columns(batch.schema.names)
            if offset == 0 and batch.num_rows > FIRST_BATCH_ROWS:  # see FIRST_BATCH_ROWS
                yield 0, batch.slice(0, FIRST_BATCH_ROWS)
                offset, batch = FIRST_BATCH_ROWS, batch.slice(FIRST_BATCH_ROWS)
            yield offset, batch
            offset += batch.num_rows

    def _looked_ahead(self, batches: Iterator[tuple[int, pa.RecordBatch]]
                      ) -> Iterator[tuple[int, pa.RecordBatch]]:
        """``batches`` read one ahead: before a batch is handed on, the contact check starts
        looking up the users of the next one (``ContactCheck.ahead``), so that a batch's first
        parts do not wait for its new users' lookups while the pipe drains. The ids are the raw
        ``_user_id`` values (an invalid row's lookup is a wasted call, never a wrong verdict:
        ``missing`` decides on the encoded ids); a batch with ``_user_data`` columns is left to
        ``_checked_parts``. A source error reading ahead is raised at its own turn."""
        if self.check is None:
            yield from batches
            return
        current: tuple[int, pa.RecordBatch] | None = None
        while True:
            error: BaseException | None = None
            following: tuple[int, pa.RecordBatch] | None = None
            try:
                following = next(batches, None)
            except Exception as exc:  # SourceReadError: after the batch before it
                error = exc
            if following is not None:
                start, upcoming = following
                if not any(name.startswith(USER_DATA) for name in upcoming.schema.names):
                    self.check.ahead(uid for uid in _user_id_strings(upcoming, distinct=True) if uid)
                    self._looked_ahead_at.add(start)
            if current is not None:
                yield current
            if error is not None:
                raise error
            if following is None:
                return
            current = following

    def _local_rejects(self, validated: Validated, batch: pa.RecordBatch, offset: int) -> int:
        rows, fields_, reasons = validated.errors.records()
        if not len(rows):
            return 0
        self.rejects.add((rows + offset).tolist(), _user_id_strings(batch, rows), fields_, reasons, "local")
        bad = len(np.unique(rows))
        if self.opts.on_outcome is not None:
            first: dict[int, str] = {}
            for r, f, m in zip(rows.tolist(), fields_, reasons):
                first.setdefault(r + offset, f"{f}: {m}" if f else m)
            self._notify("rejected", list(first), list(first.values()))
        self.report.rejected += bad
        self.report.rejected_local += bad
        return bad

    def _check_ratio(self, final: bool = False) -> None:
        ratio, report = self.opts.max_rejected_ratio, self.report
        if ratio is None or report.rows == 0 or (not final and report.rows < RATIO_MIN_ROWS):
            return
        if report.rejected / report.rows > ratio:
            raise RejectedRowsError(
                f"{report.rejected} of {report.rows} rows rejected ({report.rejected / report.rows:.2%}), more "
                f"than max_rejected_ratio={ratio:.2%}; stopping. See the rejects"
                + (f" in {report.rejects_path}" if report.rejects_path else "")
                + (f" in table {report.rejects_table}" if report.rejects_table else ""),
                report,
            )

    def _fail_on_local(self, bad: int, validated: Validated, offset: int, *, sent: bool = True
                       ) -> RejectedRowsError:
        rows, fields_, reasons = validated.errors.records()
        first = ", ".join(f"row {r + offset} {f or '(item)'}: {m}" for r, f, m in
                          list(zip(rows.tolist(), fields_, reasons))[:5])
        where = "nothing of this batch was sent" if sent else "checked before sending: nothing was sent"
        return RejectedRowsError(
            f"{bad} invalid row(s) with on_invalid='fail' ({where}): {first}"
            + (" ..." if len(rows) > 5 else "") + ". Fix the data, or pass on_invalid='skip' / 'dead_letter'.",
            self.report,
        )

    # -- values dropped, contacts checked, reads back (docs/ingest.md "No event lost in silence") --
    def _drop_values(self, validator: Validator, validated: Validated, batch: pa.RecordBatch, offset: int, *,
                     record: bool) -> dict[int, list[str]]:
        """With ``invalid_values="drop_value"``: take the droppable errors out of ``validated``
        (a row that has other errors keeps them all and is rejected whole), record them as
        rejects of stage ``"dropped"``; returns ``{batch row: [fields to leave out]}``."""
        if self.opts.invalid_values != "drop_value" or not len(validated.errors):
            return {}
        taken = validated.errors.split(validator.droppable)
        if not len(taken):
            return {}
        fatal = validated.errors.bad_mask()
        kept = RowErrors(taken.n)
        for idx, name, reason in taken.parts:
            back = fatal[idx]
            reasons = reason if isinstance(reason, list) else [reason] * len(idx)
            if back.any():
                validated.errors.add(idx[back], name, [r for r, b in zip(reasons, back) if b])
            if (~back).any():
                kept.add(idx[~back], name, [r for r, b in zip(reasons, back) if not b])
        rows, fields_, reasons = kept.records()
        if not len(rows):
            return {}
        if record:
            self.rejects.add((rows + offset).tolist(), _user_id_strings(batch, rows), fields_,
                             [f"value dropped (invalid_values='drop_value'): {r}" for r in reasons], "dropped")
            self.report.values_dropped += len(rows)
        out: dict[int, list[str]] = {}
        for r, f in zip(rows.tolist(), fields_):
            out.setdefault(r, []).append(f)
        return out

    def _checked_parts(self, encoded: EncodedBatch, offset: int) -> Iterator[EncodedBatch]:
        """The batch after the contact check, in parts of ``CHECK_PART`` events: the lookups of
        the whole batch are started before its first part (by ``_looked_ahead`` while the batch
        before it was sent, else here) and each part waits only for its own, so the first parts
        are sent while the later ones' lookups are on the wire. An id that validation changed
        (the raw value was looked ahead) is looked up by its part. With ``on_invalid="fail"``
        the batch is checked whole (nothing of it is sent if one event's contact is missing)."""
        looked_ahead = offset in self._looked_ahead_at
        self._looked_ahead_at.discard(offset)
        if self.check is None or self.opts.on_invalid == "fail" or len(encoded) <= CHECK_PART:
            part = self._check_contacts(encoded, offset)
            if self._stop is None:
                yield part
            return
        if not looked_ahead:  # a batch with _user_data columns: its lookups start now
            self.check.ahead(encoded.user_ids[i] for i, item in enumerate(encoded.items) if USER_DATA not in item)
        for start in range(0, len(encoded), CHECK_PART):
            part = self._check_contacts(_take(encoded, range(start, min(start + CHECK_PART, len(encoded)))), offset)
            if self._stop is not None:
                report = self.report
                report.skipped += len(encoded) - min(start + CHECK_PART, len(encoded))  # the parts after it
                return
            yield part

    def _check_contacts(self, encoded: EncodedBatch, offset: int) -> EncodedBatch:
        """Events whose contact the run cannot vouch for become rejects (see ``existence``)."""
        opts, report = self.opts, self.report
        if opts.kind != "events" or not len(encoded):
            return encoded
        if self.check is None:  # check_contacts=False: count what nobody vouched for
            self._vouched_rows.update(int(r) + offset for r, item in zip(encoded.rows, encoded.items)
                                      if USER_DATA in item)
            return encoded
        need = [i for i, item in enumerate(encoded.items) if USER_DATA not in item]
        try:
            missing = self.check.missing(encoded.user_ids[i] for i in need)
        except InstasentError as exc:  # cannot vouch for them: not sent (skipped), and the run stops
            report.skipped += len(encoded)
            self._stop = RequestFailedError(
                f"the contact check failed after the client's retries: {exc}. The events whose contacts were not "
                f"checked yet were not sent (they are skipped); re-running is safe.", report)
            self._stop.__cause__ = exc
            return _take(encoded, [])
        if opts.create_missing_contacts:
            missing = self._create_missing(encoded, need, missing)
        if not missing:
            return encoded
        drop = [i for i in need if encoded.user_ids[i] in missing]
        rows = [int(encoded.rows[i]) + offset for i in drop]
        users = [encoded.user_ids[i] for i in drop]
        reasons = [missing[u] for u in users]
        self.rejects.add(rows, users, [USER_ID] * len(drop), reasons, "local")
        self._notify("rejected", rows, reasons)
        report.rejected += len(drop)
        report.rejected_local += len(drop)
        report.missing_contacts += len(drop)
        if opts.on_invalid == "fail":
            report.skipped += len(encoded) - len(drop)
            first = "; ".join(f"row {r}: {m}" for r, m in list(zip(rows, reasons))[:5])
            self._stop = RejectedRowsError(
                f"{len(drop)} event(s) whose contact the run cannot vouch for, with on_invalid='fail' (nothing of "
                f"this batch was sent): {first}" + (" ..." if len(drop) > 5 else "") + ". Load their contacts "
                "first (with sync=True), send _user_data, or pass on_invalid='skip' / 'dead_letter'.", report)
            return _take(encoded, [])
        gone = set(drop)
        return _take(encoded, [i for i in range(len(encoded)) if i not in gone])

    def _create_missing(self, encoded: EncodedBatch, need: Sequence[int], missing: dict[str, str]) -> dict[str, str]:
        """``create_missing_contacts``: every event of a contact that does not exist carries
        ``_user_data`` with its ``_user_id`` (so whichever is applied first creates it); returns
        what is still missing (the contacts rejected earlier in the chain)."""
        assert self.check is not None
        create = {uid for uid in missing if not self.check.rejected_in_chain(uid)}
        if not create:
            return missing
        fresh = create - self._created
        self._created.update(fresh)
        self.report.contacts_created += len(fresh)
        for i in need:
            uid = encoded.user_ids[i]
            if uid in create:
                encoded.items[i][USER_DATA] = {USER_ID: uid}
        return {uid: reason for uid, reason in missing.items() if uid not in create}

    def _remember_sent(self, encoded: EncodedBatch, offset: int) -> None:
        for r, uid, item in zip(encoded.rows.tolist(), encoded.user_ids, encoded.items):
            self._sent_ids[r + offset] = (uid, item.get(EVENT_ID))

    def _verify(self) -> None:
        """``verify=True``: read back what was accepted; what is not found is reported."""
        opts, report = self.opts, self.report
        back = read_back(self.client, opts.kind, self._accepted_ids, datasource=opts.datasource,
                         max_in_flight=min(opts.max_in_flight, 8), wait_s=opts.verify_wait_s)
        report.verified = back.found
        report.not_stored = len(back.missing)
        report.verify_calls = back.calls
        if back.missing:
            users = [self._accepted_ids[r][0] for r in back.missing]
            reason = (f"accepted by the API but not found when read back (verify=True, asked again for "
                      f"{opts.verify_wait_s:g}s)")
            self.rejects.add(back.missing, users, [""] * len(users), [reason] * len(users), "verify")
            self.log.warning("instasent %s: %d accepted row(s) not found when read back; see the rejects (stage "
                             "'verify')", opts.kind, len(back.missing))

    # -- preflight ----------------------------------------------------------------------------
    def _preflight(self, source: Source, validator: Validator) -> None:
        """Validate everything and count the automation window before sending anything."""
        opts, report = self.opts, self.report
        progress = Progress(self.log, f"{opts.kind} preflight", opts.progress_interval, source.total_rows,
                            unit="rows read")
        in_window = 0
        first_wins = self._first_wins()
        try:
            for offset, batch in self._batches(source):
                report.rows += batch.num_rows
                validated = validator(batch)
                self._drop_values(validator, validated, batch, offset, record=True)
                if first_wins is not None:
                    report.event_id_collisions += first_wins(validated, offset)
                bad = self._local_rejects(validated, batch, offset)
                if bad and opts.on_invalid == "fail":
                    raise self._fail_on_local(bad, validated, offset, sent=False)
                valid = validated.valid
                for group in validated.groups:
                    if group.in_window is not None:
                        rows = np.arange(group.n) if group.rows is None else group.rows
                        in_window += int(np.count_nonzero(group.in_window & valid[rows]))
                self._check_ratio()
                progress.tick(report.rows, _counts(report))
        finally:
            if first_wins is not None:
                first_wins.close()
        self._check_ratio(final=True)
        if opts.kind == "events" and in_window:
            message = (f"{in_window} event(s) have an _event_date within ±1 hour of now (or none, which means "
                       f"now): sending them would fire automations")
            if opts.automations == "refuse" and not opts.dry_run:
                raise AutomationsGuardError(
                    message + "; nothing was sent (automations='refuse'). Send them with automations='allow' "
                    "if that is intended, or fix their dates.", report)
            if opts.dry_run:
                self.log.info("%s (dry run: nothing is sent)", message)
            else:  # 'allow' or 'warn': said before anything is sent
                self.log.warning("%s (automations=%r); sending now", message, opts.automations)
                self._warned_window = True

    # -- the send pass ----------------------------------------------------------------------
    def _send_pass(self, source: Source, validator: Validator, encoder: Encoder, *, counted: bool) -> None:
        opts, report = self.opts, self.report
        chunker = Chunker(max_items=opts.max_items, max_bytes=opts.max_request_bytes,
                          distinct_users=opts.kind == "contacts", hold_back=opts.kind == "contacts")
        self._chunker = chunker
        sender = Sender(self.client, opts.kind, max_in_flight=opts.max_in_flight, dry_run=opts.dry_run,
                        datasource=opts.datasource, sync=opts.sync)
        self.sender = sender
        progress = Progress(self.log, opts.kind, opts.progress_interval, source.total_rows, unit="rows read")
        first_wins = self._first_wins()  # a fresh index: the preflight's decisions, made again
        cancel = True
        try:
            for offset, batch in self._looked_ahead(self._batches(source)):
                n = batch.num_rows
                if not counted:
                    report.rows += n
                validated = validator(batch)
                dropped = self._drop_values(validator, validated, batch, offset, record=not counted)
                if first_wins is not None:
                    collided = first_wins(validated, offset)
                    if not counted:
                        report.event_id_collisions += collided
                valid = validated.valid
                n_bad = n - int(np.count_nonzero(valid))
                if n_bad and not counted:
                    self._local_rejects(validated, batch, offset)
                    if opts.on_invalid == "fail":
                        report.skipped += n - n_bad
                        self._stop = self._fail_on_local(n_bad, validated, offset)
                        break
                encoded = encoder(validated, valid)
                if dropped:
                    _omit_values(encoded, dropped)
                if not self._window_ok(encoded):
                    break
                for part in self._checked_parts(encoded, offset):
                    if opts.verify:
                        self._remember_sent(part, offset)
                    windows = part.in_window.tolist() if part.in_window is not None else None
                    self._submit_all(sender, chunker, chunker.add(part.items, (part.rows + offset).tolist(),
                                                                  part.user_ids, windows))
                    for outcome in sender.poll():
                        self._handle(outcome)
                    if self._stop is not None:
                        break
                while chunker.held > HOLD_LIMIT and self._stop is None:  # memory stays bounded
                    if not self._wait_one(sender):  # nothing in flight: the open request goes now
                        before = report.requests
                        self._submit_all(sender, chunker, chunker.flush())
                        if report.requests == before:
                            break
                if self._stop is None:
                    try:
                        self._check_ratio()
                    except RejectedRowsError as exc:
                        self._stop = exc
                if self._stop is not None:
                    break
                progress.tick(report.rows, _counts(report))
            self._finish_sends(sender, chunker)
            cancel = False
        finally:
            if first_wins is not None:
                first_wins.close()
            sender.close(cancel=cancel)
            for outcome in sender.poll():
                self._handle(outcome)
            for request in sender.unfinished():  # cancelled before they were sent
                report.requests -= 1
                report.sent -= request.n_items
                report.skipped += request.n_items
        progress.tick(report.rows, _counts(report), force=True)
        if self._stop is not None:
            raise self._stop
        self._check_ratio(final=True)

    def _finish_sends(self, sender: Sender, chunker: Chunker) -> None:
        """Send what is left: the open request, then the held-back rows as their users' earlier
        rows are answered, until every request is answered."""
        while True:
            before = self.report.requests
            self._submit_all(sender, chunker, chunker.flush())
            for outcome in sender.drain():
                self._handle(outcome)
                self._submit_released(sender)
            if self._stop is not None or not chunker.unsent:
                return
            if self.report.requests == before:
                raise RuntimeError(f"{chunker.held} held-back rows can never be sent (a bug)")

    def _wait_one(self, sender: Sender) -> bool:
        """Wait for one answer (and send what it releases); False when nothing is in flight."""
        for outcome in sender.drain():
            self._handle(outcome)
            self._submit_released(sender)
            return True
        return False

    def _submit_released(self, sender: Sender) -> None:
        """Send the requests that answers filled with held-back rows (``Chunker.done``)."""
        while self._released:
            self._submit(sender, self._released.popleft())

    def _submit(self, sender: Sender, request: Request) -> None:
        if self._stop is not None:
            self.report.skipped += request.n_items
            return
        self.report.requests += 1
        self.report.sent += request.n_items
        for outcome in sender.submit(request):
            self._handle(outcome)

    def _submit_all(self, sender: Sender, chunker: Chunker, requests: Any) -> None:
        """Submit the chunker's requests, after recording the rows too large for any request
        (with ``on_invalid="fail"`` such a row stops the run like any invalid row)."""
        pending = list(requests)
        big = self._record_oversize(chunker)
        if big and self.opts.on_invalid == "fail" and self._stop is None:
            self._stop = RejectedRowsError(
                f"{len(big)} row(s) larger than max_request_bytes with on_invalid='fail' (not sent, nor the rows "
                f"after them): " + ", ".join(f"row {r} {f or '(item)'}: {m}" for r, f, m in big[:5]), self.report)
        for request in pending:
            self._submit(sender, request)
        self._submit_released(sender)

    def _record_oversize(self, chunker: Chunker) -> list[tuple[int, str, str]]:
        big = chunker.take_oversize()
        if not big:
            return []
        reasons = [f"the item is {b.size} bytes, more than max_request_bytes={chunker.max_bytes}"
                   + (f" ({b.field} is the largest value)" if b.field else "") for b in big]
        self.rejects.add([b.row for b in big], [b.user_id for b in big], [b.field for b in big], reasons, "local")
        self._notify("rejected", [b.row for b in big], reasons)
        self.report.rejected += len(big)
        self.report.rejected_local += len(big)
        return [(b.row, b.field, r) for b, r in zip(big, reasons)]

    def _window_ok(self, encoded: EncodedBatch) -> bool:
        """The automations guard at send time (dates in the future can enter the window)."""
        opts = self.opts
        if opts.kind != "events" or opts.dry_run or encoded.in_window is None or opts.automations == "allow":
            return True
        count = int(np.count_nonzero(encoded.in_window))
        if not count:
            return True
        if opts.automations == "refuse":
            self.report.skipped += len(encoded)
            self._stop = AutomationsGuardError(
                f"{count} event(s) of this batch are now within ±1 hour of the current time (future-dated events "
                f"entering the automation window); stopped before sending them (automations='refuse')", self.report)
            return False
        if not self._warned_window:
            self._warned_window = True
            self.log.warning("%d event(s) are within ±1 hour of now and will fire automations (automations='warn'); "
                             "the report counts all of them in would_fire_automations", count)
        return True

    def _handle(self, outcome: Outcome) -> None:
        report, request = self.report, outcome.request
        if self._chunker is not None and self._chunker.hold_back:
            self._released.extend(self._chunker.done(request))  # sent by _submit_released
        n = request.n_items
        waiting = isinstance(outcome.error, LongWaitError) and not outcome.error.may_have_acted
        if isinstance(outcome.error, SenderClosed) or waiting:  # never sent: skipped, not rejected
            report.requests -= 1
            report.sent -= n
            report.skipped += n
            if isinstance(outcome.error, LongWaitError) and self._stop is None:
                self._stop = outcome.error  # the caller resumes later (an operator defers; it also
                # finds a LongWaitError that may have acted, as the cause of the RequestFailedError below)
            return
        if outcome.error is not None or outcome.result is None:
            err = outcome.error
            # a request that may have reached the API (timeout, lost connection, 5xx, an unreadable
            # 2xx) leaves its rows' outcome unknown: they may be stored. Only a request the API
            # certainly never applied (refused connections, 429s, 4xx) rejects them.
            unknown = getattr(err, "may_have_acted", True)
            if unknown:
                reason = (f"outcome unknown: the request failed after the client's retries and the API may have "
                          f"stored the row ({err})")
                report.unknown += n
                where = "reported as unknown outcome (stage 'unknown': they may be stored)"
            else:
                reason = f"request failed: {err}" if err is not None else "request failed"
                report.rejected += n
                report.rejected_api += n
                where = "in the rejects (stage 'api')"
            self.rejects.add(request.rows, request.user_ids, [""] * n, [reason] * n, "unknown" if unknown else "api")
            self._notify("failed", request.rows, [reason] * n)
            if self._stop is None:
                self._stop = RequestFailedError(
                    f"a push request of {n} items failed after the client's retries: {err}. Its rows are {where}; "
                    f"re-running is safe (contacts are upserts, events carry a stable _event_id).", report)
                self._stop.__cause__ = err
            return
        result = outcome.result
        errors: dict[int, list[tuple[str, str]]] = {}
        for item_error in result.errors:
            if 0 <= item_error.position < n:
                errors.setdefault(item_error.position, []).extend(item_error.reasons())
        accepted = {p for p in result.accepted if 0 <= p < n and p not in errors}
        missing = [p for p in range(n) if p not in accepted and p not in errors]
        for p in missing:
            errors[p] = [("", "the API returned no result for this item")]
        if errors:
            rows: list[int] = []
            users: list[str] = []
            fields_: list[str] = []
            reasons: list[str] = []
            for p in sorted(errors):
                for field_name, reason in errors[p]:
                    rows.append(request.rows[p])
                    users.append(request.user_ids[p])
                    fields_.append(field_name)
                    reasons.append(reason)
            self.rejects.add(rows, users, fields_, reasons, "api")
            if self.opts.on_outcome is not None:
                self._notify("rejected", [request.rows[p] for p in sorted(errors)],
                             ["; ".join(f"{f}: {m}" if f else m for f, m in errors[p]) for p in sorted(errors)])
            report.rejected += len(errors)
            report.rejected_api += len(errors)
            if self.opts.on_invalid == "fail" and self._stop is None:
                first = "; ".join(f"row {r} {f or '(item)'}: {m}" for r, f, m in list(zip(rows, fields_, reasons))[:5])
                self._stop = RejectedRowsError(
                    f"the API rejected {len(errors)} row(s) with on_invalid='fail': {first}", report)
        report.accepted += len(accepted)
        if report.written_user_ids is not None:
            report.written_user_ids.update(request.user_ids[p] for p in accepted)
        if report.unverified is not None:
            report.unverified += sum(1 for p in accepted if request.rows[p] not in self._vouched_rows)
        if self.opts.verify:
            for p in accepted:
                row = request.rows[p]
                self._accepted_ids[row] = self._sent_ids.pop(row, (request.user_ids[p], None))
        if self.opts.on_outcome is not None:
            self._notify("accepted", [request.rows[p] for p in sorted(accepted)])
        if report.would_fire_automations is not None and request.in_window:
            report.would_fire_automations += sum(1 for p in accepted if request.in_window[p])


# ---------------------------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------------------------
def ingest(client: Any, kind: Kind, data: Any, **options: Any) -> IngestReport:
    """Validate, encode and push ``data`` as ``kind`` (``"contacts"`` or ``"events"``)."""
    unknown = set(options) - IngestOptions.names()
    if "rejects_conn_id" in unknown:
        raise IngestSchemaError(
            "rejects_conn_id is an Airflow connection id: the operator resolves it. Outside Airflow pass "
            "rejects_conn= a common-sql DbApiHook, a DB-API connection or a SQLAlchemy connection")
    if unknown:
        raise IngestSchemaError(f"unknown option(s): {', '.join(sorted(unknown))}")
    return IngestRun(client, data, IngestOptions(kind=kind, **options)).run()


def write_contacts(client: Any, data: Any, **options: Any) -> IngestReport:
    """Upsert contacts: one column per attribute uid, ``_user_id`` required.

    Args:
        client: an ``InstasentClient``.
        data: a pandas DataFrame, a pyarrow Table / RecordBatch / RecordBatchReader, a Parquet
            path, glob or directory (or a URL or ``ObjectStoragePath``), a ``SqlSource``, or a
            callable returning one of these.
        **options: any of the options below (defaults in ``DEFAULTS``; details in docs/ingest.md).
            ``columns``: ``{source: target}`` renames, ``None`` drops a column.
            ``on_invalid``: ``"fail"`` (default), ``"skip"`` or ``"dead_letter"``.
            ``max_rejected_ratio``: stop when more than this share of rows is rejected.
            ``dry_run``: validate and call the API with ``_dryRun``; nothing is stored.
            ``automations``: ``"allow"``, ``"warn"`` or ``"refuse"`` (events in the ±1 h window).
            ``preflight``: check the whole input before sending anything.
            ``nulls``: ``"omit"`` (keep the stored value) or ``"null"`` (clear it).
            ``assume_timezone``: the zone of naive timestamps.
            ``event_id_fields``: derive ``_event_id`` from these fields (events).
            ``unknown_columns``: ``"error"``, ``"ignore"`` or ``"send"``.
            ``rejects_path``: a Parquet file with every reject.
            ``rejects_table`` and ``rejects_conn``: a SQL table with every reject, in a hook,
            DB-API or SQLAlchemy connection.
            ``max_rejects_in_memory``: rejects kept in ``report.rejects``.
            ``max_in_flight``: concurrent push requests. ``max_items``: items per request.
            ``max_request_bytes``: the byte ceiling of a request. ``batch_rows``: rows per batch.
            ``progress_interval``: seconds between progress lines. ``datasource``: the
            datasource uid. ``specs``: a ``ProjectSpecs`` to use instead of loading it.
            ``spool_dir``: where one-shot sources are spooled for the preflight, and where the
            ``_event_id`` index spills past 262,144 ids (``idempotency.MEMORY_KEYS``).
            ``run_id``: written to the rejects table. ``logger``: where the lines go.
            ``on_outcome``: called with ``(outcome, source_rows, reasons)`` for every decided row
            (``"accepted"``, ``"rejected"`` or ``"failed"``); the stateful sync's hook.
            No event lost in silence (docs/ingest.md): ``sync``: push with ``?_sync`` (set it on
            contacts whose events follow). ``check_contacts`` (events, default on): an event whose
            contact the run cannot vouch for is a reject. ``contacts_from`` (events): the report,
            rejects or ``rejects_path`` of the contacts run(s) of this run or chain.
            ``invalid_values``: ``"reject_row"`` or ``"drop_value"``. ``verify`` and
            ``verify_wait_s``: read back what was accepted, through public endpoints.

    Returns:
        The ``IngestReport``: counts, rejects and throughput.

    Raises:
        IngestError: the run stopped (a subclass says why); ``.report`` holds what was done.
    """
    return ingest(client, "contacts", data, **options)


def write_events(client: Any, data: Any, *, event_type: str | None = None, **options: Any) -> IngestReport:
    """Append events: ``_user_id``, optional ``_event_id`` / ``_event_date`` / ``_user_data``,
    and the parameters as flat columns or one ``_event_parameters`` struct column.

    Args:
        client: an ``InstasentClient``.
        data: as for ``write_contacts``.
        event_type: the type of every row; or give an ``_event_type`` column.
        **options: the options of ``write_contacts`` (all of them apply to events).

    Returns:
        The ``IngestReport``, with ``would_fire_automations`` for events.
    """
    return ingest(client, "events", data, event_type=event_type, **options)


def prepare(specs: ProjectSpecs, kind: Kind, data: Any, **options: Any) -> Iterator[Request]:
    """Validate, encode and chunk ``data`` without sending: yields the push requests.

    Invalid rows are left out (no report). For benchmarks, previews and tests.
    """
    opts = IngestOptions(kind=kind, specs=specs, **options)
    validator = Validator(specs, kind, event_type=opts.event_type, options=opts.coerce_options())
    encoder = opts.encoder()
    chunker = Chunker(max_items=opts.max_items, max_bytes=opts.max_request_bytes, distinct_users=kind == "contacts")
    mapper = ColumnMapper(opts.columns)
    offset = 0
    for raw in open_source(data, batch_rows=opts.batch_rows, drop=mapper.drop).batches():
        batch = mapper(raw)
        opts.check_columns(batch.schema.names)
        encoded = encoder(validator(batch))
        yield from chunker.add(encoded.items, (encoded.rows + offset).tolist(), encoded.user_ids)
        offset += batch.num_rows
    yield from chunker.flush()
