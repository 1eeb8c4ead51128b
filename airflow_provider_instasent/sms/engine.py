"""The bulk SMS engine: rows → recipients and texts → guards → ledger → send → per-row outcomes.

One implementation behind ``send_sms`` (notebooks), ``InstasentSendSmsOperator`` (one message
with a ledger) and ``InstasentSendBulkSmsOperator``. See docs/sms.md.

Every row read ends with exactly one outcome (`OUTCOMES`), and the counts add up:

* ``sent``: this run sent it (the API answered with an SMS id, or answered ambiguously and the
  lookup found the message);
* ``skipped``: the ledger says it was sent already (by an earlier run, or by an earlier
  attempt whose answer was lost and which a lookup found);
* ``held``: outside the recipient's ``send_window`` (sent by a later run: the operator defers
  until the window opens, or leaves it to the next run, by ``outside_window``);
* ``rejected``: a problem of the row (a phone number that is not a mobile number, an empty
  text, an unknown time zone): fixing the data fixes it;
* ``refused``: a guard refused it (``max_recipients``, the same idempotency key twice in one input);
* ``failed``: the API refused it (certainly not sent: a rerun may send it) or its outcome is
  unknown (the lookup found nothing yet: a rerun looks it up again before sending).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import string
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from ..client.endpoints import MAX_UTM_TERM
from ..client.errors import (
    InstasentConfigError,
    InstasentConnectionError,
    InstasentHTTPError,
    InstasentProtocolError,
)
from ..ingest.phones import check_region, time_zones, to_e164
from ..ingest.sources import open_source
from ..sync.store import now_iso
from .ledger import Entry, Ledger
from .window import Window, next_opening, parse_window, zone

log = logging.getLogger("airflow_provider_instasent.sms")

Outcome = Literal["sent", "skipped", "held", "rejected", "refused", "failed"]
OUTCOMES: tuple[Outcome, ...] = ("sent", "skipped", "held", "rejected", "refused", "failed")
RecipientKind = Literal["phone", "audience_id"]
OutsideWindow = Literal["defer", "skip"]

#: how far before a ``pending`` attempt a listed SMS may be dated and still be that attempt
#: (the API's clock against ours)
LOOKUP_SKEW_S = 300.0


class SmsError(Exception):
    """A bulk SMS run stopped; ``report`` has the per-row outcomes so far."""

    report: SmsReport | None = None


class SmsGuardError(SmsError):
    """A guard (``max_recipients``) refused the whole run before the first send."""


@dataclass(frozen=True)
class SmsOptions:
    """Every option of a bulk SMS run (checked on construction). See docs/sms.md."""

    text: str | None = None
    text_column: str | None = None
    recipient_column: str = "phone"
    recipient_kind: RecipientKind = "phone"
    default_region: str | None = None
    key_column: str | None = None
    scope: str = ""
    sender: str = "default"
    utm_term: str | None = None
    allow_unicode: bool = False
    send_window: tuple[str, str] | None = None
    timezone_column: str | None = None
    outside_window: OutsideWindow = "defer"
    max_recipients: int | None = None
    max_per_second: float | None = None
    ledger_name: str = "default"
    run_id: str | None = None
    clock: Callable[[], dt.datetime] | None = field(default=None, compare=False)
    logger: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if (self.text is None) == (self.text_column is None):
            raise InstasentConfigError("pass exactly one of text= (a template) or text_column=")
        if self.recipient_kind not in ("phone", "audience_id"):
            raise InstasentConfigError(f"recipient_kind must be 'phone' or 'audience_id', got {self.recipient_kind!r}")
        if self.outside_window not in ("defer", "skip"):
            raise InstasentConfigError(f"outside_window must be 'defer' or 'skip', got {self.outside_window!r}")
        if self.utm_term is not None and len(self.utm_term) > MAX_UTM_TERM:
            raise InstasentConfigError(f"utm_term must be at most {MAX_UTM_TERM} characters")
        if self.max_recipients is not None and self.max_recipients < 0:
            raise InstasentConfigError("max_recipients must be >= 0")
        if self.max_per_second is not None and self.max_per_second <= 0:
            raise InstasentConfigError("max_per_second must be > 0")
        try:
            check_region(self.default_region)
            parse_window(self.send_window)
        except ValueError as exc:
            raise InstasentConfigError(str(exc)) from None
        if self.text is not None:
            try:
                list(string.Formatter().parse(self.text))
            except ValueError as exc:
                raise InstasentConfigError(f"text template {self.text!r}: {exc}") from None

    @property
    def window(self) -> Window | None:
        return parse_window(self.send_window)

    @property
    def template_fields(self) -> list[str]:
        """The row fields the text template uses."""
        if self.text is None:
            return []
        return [name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(self.text) if name]

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


#: Every option's default: the operators take theirs from here.
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(SmsOptions)}


@dataclass
class RowOutcome:
    """What became of one source row."""

    source_row: int
    outcome: Outcome
    reason: str | None = None
    key: str | None = None
    recipient: str | None = None
    sms_id: str | None = None


@dataclass
class SmsReport:
    """The counts and per-row outcomes of one run (``rows`` = the sum of the outcome counts)."""

    run_id: str
    rows: int = 0
    sent: int = 0
    skipped: int = 0
    held: int = 0
    rejected: int = 0
    refused: int = 0
    failed: int = 0
    lookups: int = 0
    next_window_at: str | None = None
    status: str = "running"
    error: str | None = None
    outcomes: list[RowOutcome] = field(default_factory=list, repr=False)

    def add(self, row: RowOutcome) -> None:
        self.outcomes.append(row)
        setattr(self, row.outcome, getattr(self, row.outcome) + 1)

    def to_dict(self) -> dict[str, Any]:
        """Counts only (what XCom carries): never the rows."""
        d = asdict(self)
        d.pop("outcomes")
        return d

    def summary(self) -> str:
        return ", ".join(f"{getattr(self, o)} {o}" for o in OUTCOMES) + f" of {self.rows} rows"


def derive_key(scope: str, recipient: str, text: str, utm_term: str | None) -> str:
    """The idempotency key of a message without a caller's key: recipient + text + scope (+ utm)."""
    raw = "\x1f".join((scope, recipient, text, utm_term or ""))
    return "d:" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class _Row:
    index: int
    values: dict[str, Any]
    recipient: str | None = None
    text: str | None = None
    key: str | None = None
    zones: tuple[str, ...] = ()


class SmsRun:
    """One run of the engine. Use ``send_sms``."""

    def __init__(self, client: Any, data: Any, ledger: Any, options: SmsOptions) -> None:
        self.client = client
        self.data = data
        self.state = ledger
        self.opts = options
        self.log = options.logger or log
        self.report = SmsReport(options.run_id or uuid.uuid4().hex)
        self._last_send = 0.0

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> SmsReport:
        report = self.report
        try:
            rows = self._prepare(list(self._read()))
            with Ledger.open(self.state, report.run_id, name=self.opts.ledger_name) as ledger:
                try:
                    self._send_all(ledger, rows)
                    report.status = "ok"
                finally:
                    ledger.record_outcomes(report.run_id, (
                        (o.source_row, o.key, o.recipient, o.outcome, o.reason, o.sms_id) for o in report.outcomes))
        except BaseException as exc:
            report.status = "failed"
            report.error = report.error or f"{type(exc).__name__}: {exc}"
            if isinstance(exc, SmsError):
                exc.report = report
            raise
        finally:
            counted = sum(getattr(report, o) for o in OUTCOMES)
            if report.status == "ok" and counted != report.rows:  # a bug: never claim more than happened
                raise AssertionError(f"SMS accounting mismatch: {report.rows} rows, {counted} outcomes")
            (self.log.info if report.status == "ok" else self.log.warning)(
                "instasent SMS run %s %s: %s", report.run_id, report.status, report.summary())
        return report

    def _read(self) -> Iterator[_Row]:
        source = open_source(self.data)
        index = 0
        for batch in source.batches():
            for values in batch.to_pylist():
                yield _Row(index, values)
                index += 1

    def _now(self) -> dt.datetime:
        now = self.opts.clock() if self.opts.clock is not None else dt.datetime.now(dt.UTC)
        if now.tzinfo is None:
            raise InstasentConfigError("clock() must return a timezone-aware datetime")
        return now

    # -- per-row checks, before anything is sent -----------------------------------------------
    def _prepare(self, rows: list[_Row]) -> list[_Row]:
        """Recipients, texts and keys; rejects and duplicate keys decided; ``max_recipients`` checked."""
        opts, report = self.opts, self.report
        report.rows = len(rows)
        if rows:
            self._check_columns(rows[0].values)
        window = opts.window
        seen: dict[str, int] = {}
        ready: list[_Row] = []
        for row in rows:
            reason = self._resolve(row, window is not None)
            if reason is not None:
                report.add(RowOutcome(row.index, "rejected", reason, recipient=row.recipient))
                continue
            assert row.key is not None
            first = seen.setdefault(row.key, row.index)
            if first != row.index:
                report.add(RowOutcome(row.index, "refused", f"the same idempotency key as row {first} in this input",
                                      row.key, row.recipient))
                continue
            ready.append(row)
        if opts.max_recipients is not None and len(ready) > opts.max_recipients:
            reason = (f"max_recipients={opts.max_recipients}: this run would send up to {len(ready)} messages; "
                      "nothing was sent")
            for row in ready:
                report.add(RowOutcome(row.index, "refused", reason, row.key, row.recipient))
            report.outcomes.sort(key=lambda o: o.source_row)
            exc = SmsGuardError(reason + ". Raise max_recipients if this volume is intended.")
            report.error = str(exc)
            with Ledger.open(self.state, report.run_id, name=opts.ledger_name) as ledger:
                ledger.record_outcomes(report.run_id, (
                    (o.source_row, o.key, o.recipient, o.outcome, o.reason, o.sms_id) for o in report.outcomes))
            raise exc
        return ready

    def _check_columns(self, first: Mapping[str, Any]) -> None:
        opts = self.opts
        wanted = [opts.recipient_column, *(c for c in (opts.text_column, opts.key_column, opts.timezone_column) if c),
                  *opts.template_fields]
        missing = sorted({c for c in wanted if c not in first})
        if missing:
            raise InstasentConfigError(
                f"the input has no column {', '.join(repr(c) for c in missing)} (columns: {', '.join(first)})")

    def _resolve(self, row: _Row, windowed: bool) -> str | None:
        """Fill the row's recipient, text, key and zones; a reason when the row is rejected."""
        opts, v = self.opts, row.values
        raw = v.get(opts.recipient_column)
        if raw is None or str(raw).strip() == "":
            return f"{opts.recipient_column}: no recipient"
        if opts.recipient_kind == "phone":
            e164, reason = to_e164(str(raw), check_region(opts.default_region))
            if e164 is None:
                return f"{opts.recipient_column}: {reason}"
            row.recipient = e164
        else:
            row.recipient = str(raw).strip()
        try:
            text = str(v.get(opts.text_column) or "") if opts.text_column else str(opts.text).format_map(v)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            return f"text: the template cannot be filled from this row ({type(exc).__name__}: {exc})"
        if not text.strip():
            return "text: empty message"
        row.text = text
        if opts.key_column:
            key = v.get(opts.key_column)
            if key is None or str(key).strip() == "":
                return f"{opts.key_column}: no idempotency key"
            row.key = str(key)[:255]
        else:
            row.key = derive_key(opts.scope, row.recipient, text, opts.utm_term)
        if windowed:
            tz = v.get(opts.timezone_column) if opts.timezone_column else None
            if tz:
                try:
                    zone(str(tz))
                except ValueError as exc:
                    return f"{opts.timezone_column}: {exc}"
                row.zones = (str(tz),)
            elif opts.recipient_kind == "phone":
                row.zones = time_zones(row.recipient)
                if not row.zones:
                    return (f"{opts.recipient_column}: the time zone of {row.recipient} is unknown: "
                            "pass timezone_column=")
            else:
                return ("no time zone for send_window: an audience id says nothing of where the recipient is; "
                        "pass timezone_column=")
        return None

    # -- sending ------------------------------------------------------------------------------
    def _send_all(self, ledger: Ledger, rows: list[_Row]) -> None:
        report, window = self.report, self.opts.window
        entries = ledger.get([r.key for r in rows if r.key])
        known: set[str] | None = None
        held_until: list[dt.datetime] = []
        for row in rows:
            assert row.key is not None
            assert row.recipient is not None
            assert row.text is not None
            entry = entries.get(row.key)
            if entry is not None and entry.status == "sent":
                report.add(RowOutcome(row.index, "skipped", f"already sent (SMS {entry.sms_id}) according to the "
                                      "ledger", row.key, row.recipient, entry.sms_id))
                continue
            if window is not None:
                opening = next_opening(self._now(), row.zones, window)
                if opening is not None:
                    held_until.append(opening)
                    report.add(RowOutcome(row.index, "held", f"outside send_window {self.opts.send_window} in "
                                          f"{'/'.join(row.zones)}; opens at {_iso(opening)}", row.key, row.recipient))
                    continue
            if entry is not None and entry.status == "pending":
                if known is None:
                    known = ledger.known_sms_ids()
                try:
                    found = self._lookup(row, entry.first_attempt_at, known)
                except (InstasentHTTPError, InstasentConnectionError, InstasentProtocolError) as exc:
                    report.add(RowOutcome(row.index, "failed", f"an earlier attempt's outcome is unknown and the "
                                          f"lookup failed ({exc}): not sent again", row.key, row.recipient))
                    continue
                if found is not None:
                    ledger.answered(row.key, "sent", sms_id=found, reason="found by lookup after an unanswered attempt")
                    known.add(found)
                    report.add(RowOutcome(row.index, "skipped", f"sent by an earlier attempt whose answer was lost "
                                          f"(found as SMS {found} by lookup)", row.key, row.recipient, found))
                    continue
            self._send_one(ledger, row, entry)
        if held_until:
            report.next_window_at = _iso(min(held_until))

    def _send_one(self, ledger: Ledger, row: _Row, entry: Entry | None) -> None:
        assert row.key is not None
        assert row.recipient is not None
        assert row.text is not None
        report, opts = self.report, self.opts
        self._pace()
        attempt_at = now_iso()  # the API's clock is compared with the wall clock, never the fake one
        ledger.pending(row.key, row.recipient, text_hash(row.text), opts.utm_term, report.run_id)
        first_at = entry.first_attempt_at if entry is not None else attempt_at
        try:
            sms = self.client.send_direct_sms(row.recipient, row.text, sender=opts.sender, utm_term=opts.utm_term,
                                              allow_unicode=opts.allow_unicode)
        except (InstasentHTTPError, InstasentConnectionError, InstasentProtocolError) as exc:
            if isinstance(exc, InstasentHTTPError) and 400 <= exc.status < 500:  # refused: certainly not sent
                reason = f"the API refused it: {exc}"
                ledger.answered(row.key, "failed", reason=reason)
                report.add(RowOutcome(row.index, "failed", reason, row.key, row.recipient))
                return
            self._after_ambiguous(ledger, row, exc, first_at)
            return
        sms_id = None if not sms.get("id") else str(sms["id"])
        ledger.answered(row.key, "sent", sms_id=sms_id)
        report.add(RowOutcome(row.index, "sent", None, row.key, row.recipient, sms_id))

    def _after_ambiguous(self, ledger: Ledger, row: _Row, exc: Exception, first_at: str) -> None:
        """The request may have reached the API: look it up now; if not found, leave it pending."""
        assert row.key is not None
        report = self.report
        try:
            found = self._lookup(row, first_at, ledger.known_sms_ids())
        except (InstasentHTTPError, InstasentConnectionError, InstasentProtocolError):
            found = None
        if found is not None:
            ledger.answered(row.key, "sent", sms_id=found, reason=f"answer lost ({exc}); found by lookup")
            report.add(RowOutcome(row.index, "sent", f"answer lost; found by lookup ({exc})", row.key,
                                  row.recipient, found))
            return
        reason = (f"outcome unknown ({exc}): not found by lookup yet; the next run looks it up again before "
                  "sending")
        ledger.answered(row.key, "pending", reason=reason)
        report.add(RowOutcome(row.index, "failed", reason, row.key, row.recipient))

    def _lookup(self, row: _Row, since_iso: str, known: set[str]) -> str | None:
        """The SMS id of this row's message if the API lists it (same recipient, text and utm term,
        dated at or after the first attempt, not attributed to another key)."""
        self.report.lookups += 1
        since = _parse_iso(since_iso) - dt.timedelta(seconds=LOOKUP_SKEW_S)
        for sms in self.client.list_sms_for_audience(str(row.recipient)):
            sid = str(sms.get("id"))
            if sid in known or sms.get("text") != row.text:
                continue
            utm = (sms.get("metadata") or {}).get("utmTerm") if isinstance(sms.get("metadata"), Mapping) else None
            if self.opts.utm_term is not None and utm not in (None, self.opts.utm_term):
                continue
            when = sms.get("createdAt") or sms.get("sentAt") or sms.get("scheduledAt")
            if when and _parse_iso(str(when)) < since:
                continue  # an older message with the same text: not this attempt
            return sid
        return None

    def _pace(self) -> None:
        """At most ``max_per_second`` sends (the client also paces by ``X-RateLimit-*``)."""
        if self.opts.max_per_second is None:
            return
        gap = 1.0 / self.opts.max_per_second
        wait = self._last_send + gap - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_send = time.monotonic()


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_iso(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def send_sms(client: Any, data: Any, *, ledger: Any, **options: Any) -> SmsReport:
    """Send one SMS per row of ``data`` (a DataFrame, Arrow table, Parquet path or ``SqlSource``),
    exactly once per idempotency key, recorded in ``ledger`` (a DuckDB path, a common-sql hook,
    a DB-API or SQLAlchemy connection). Options: `SmsOptions`; see docs/sms.md."""
    unknown = set(options) - SmsOptions.names()
    if unknown:
        raise InstasentConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
    return SmsRun(client, data, ledger, SmsOptions(**options)).run()


__all__ = ["DEFAULTS", "OUTCOMES", "RowOutcome", "SmsError", "SmsGuardError", "SmsOptions", "SmsReport",
           "derive_key", "send_sms"]
