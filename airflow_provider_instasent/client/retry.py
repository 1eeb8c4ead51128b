"""Retry decisions: what is retried, and how long to wait.

Pure functions and a small policy object, so the decisions are unit-tested without sleeping.

* Retried: 429, 5xx, and requests that got no answer (connection refused or dropped,
  timeouts). Never any other 4xx: a 400/401/403/404/422 will not change on its own.
* Non-idempotent requests (an SMS send, a datasource create) are retried only when the
  server certainly did not act on them: a 429, or a connection that was never established.
* The wait honours ``Retry-After`` (seconds or an HTTP date), then ``X-RateLimit-Reset``
  (an absolute Unix timestamp) on a 429, and otherwise grows exponentially with jitter.
* Attempts and total time are both bounded.

The loop itself is tenacity's: ``RetryPolicy.retrying`` turns these decisions into its
``retry=``, ``wait=`` and ``stop=`` callables (and its ``sleep=``, which tests replace).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import tenacity

from .endpoints import H_RESET, H_RETRY_AFTER
from .errors import LongWaitError

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, val in headers.items():
            if key.lower() == lowered:
                return val
    return value


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait according to ``Retry-After`` (delta-seconds or HTTP-date), or None."""
    raw = _header(headers, H_RETRY_AFTER)
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def reset_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds until ``X-RateLimit-Reset``; it is an absolute Unix timestamp, but a small value
    (under ten years of seconds) is read as a delta, which some gateways send."""
    raw = _header(headers, H_RESET)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    if value < 315_360_000:  # a delta, not a timestamp
        return max(0.0, value)
    current = time.time() if now is None else now
    return max(0.0, value - current)


def is_retryable_status(status: int) -> bool:
    return status in RETRY_STATUSES or 500 <= status < 600


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: what the retry decisions read, and what the caller keeps.

    ``status`` is None when no response came (then ``failure`` is the exception, and
    ``connected`` is False when the request certainly never reached the server). ``ok``: the
    caller takes this answer (a success, or a status it accepts); it is never retried.
    """

    status: int | None
    headers: Mapping[str, str] = field(default_factory=dict)
    data: Any = None
    ok: bool = False
    failure: Exception | None = None
    connected: bool = True
    #: the connection was refused: nothing listens at the address (or not yet, while it restarts)
    refused: bool = False


@dataclass
class RetryPolicy:
    """Bounded exponential backoff with jitter that honours the server's hints.

    Args:
        max_retries: retries after the first attempt (0 disables retrying).
        backoff_base: first backoff in seconds; doubles each retry.
        backoff_max: ceiling of one computed backoff.
        max_wait: ceiling of one wait asked for by ``Retry-After``/``X-RateLimit-Reset``.
        max_total: give up when the next wait would pass this many seconds since the
            first attempt.
        max_refused: give up on a refused connection when the next wait would pass this many
            seconds since the first attempt: a server that restarts is back within it, and
            nothing listening at the address is reported in seconds, not minutes.
        long_wait: a wait asked for by the server longer than this raises ``LongWaitError``
            instead of sleeping (None: never; an Airflow operator sets it to defer).
    """

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_wait: float = 120.0
    max_total: float = 600.0
    max_refused: float = 3.0
    long_wait: float | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    wall_clock: Callable[[], float] = field(default=time.time, repr=False)

    def backoff(self, retry: int) -> float:
        """Jittered exponential backoff for retry number ``retry`` (0-based)."""
        ceiling = min(self.backoff_max, self.backoff_base * (2**retry))
        # "equal jitter": never less than half the step, so retries do spread out.
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def delay(self, retry: int, status: int | None, headers: Mapping[str, str] | None) -> float:
        """How long to wait before retry number ``retry`` after a response (or none)."""
        headers = headers or {}
        hinted = retry_after_seconds(headers, self.wall_clock())
        if hinted is None and status == 429:
            hinted = reset_seconds(headers, self.wall_clock())
        if hinted is not None and self.long_wait is not None and hinted > self.long_wait:
            raise LongWaitError(hinted, resume_at=self.wall_clock() + hinted)
        if hinted is not None:
            # A little jitter on top so that many workers told "1 s" do not return in lockstep.
            return min(self.max_wait, hinted) + self.rng.uniform(0, 0.1)
        return self.backoff(retry)

    def retryable(self, *, status: int | None, idempotent: bool, connected: bool) -> bool:
        """Whether a failed attempt may be retried at all (bounds aside).

        ``connected`` is False when the request certainly never reached the server.
        """
        if status is not None:
            if status == 429:
                return True
            return idempotent and is_retryable_status(status)
        # no response at all
        return idempotent or not connected

    def exhausted(self, retry: int, elapsed: float, wait: float, *, refused: bool = False) -> bool:
        """Whether retry number ``retry``, after ``wait`` more seconds, would pass a bound."""
        limit = min(self.max_total, self.max_refused) if refused else self.max_total
        return retry >= self.max_retries or elapsed + wait > limit

    def should_retry(
        self,
        retry: int,
        elapsed: float,
        wait: float,
        *,
        status: int | None,
        idempotent: bool,
        connected: bool,
    ) -> bool:
        """Decide whether retry number ``retry`` may happen (``retryable`` within the bounds)."""
        return not self.exhausted(retry, elapsed, wait) and self.retryable(
            status=status, idempotent=idempotent, connected=connected
        )

    def run(
        self,
        attempt: Callable[[], Outcome],
        *,
        idempotent: bool,
        before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
    ) -> Outcome:
        """Call ``attempt`` until its ``Outcome`` is ok or the retries stop; the last one.

        The first attempt is made before tenacity is involved, so the common case (a success)
        costs nothing more; a failed first attempt becomes tenacity's attempt 1.
        """
        started = self.clock()
        first = attempt()
        if first.ok:
            return first
        pending = [first]

        def again() -> Outcome:
            return pending.pop() if pending else attempt()

        result: Outcome = self.retrying(idempotent=idempotent, before_sleep=before_sleep, started=started)(again)
        return result

    def retrying(
        self,
        *,
        idempotent: bool,
        before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
        started: float | None = None,
    ) -> tenacity.Retrying:
        """A tenacity ``Retrying`` for one request, whose attempts return an ``Outcome``.

        ``retry=`` is ``retryable``, ``wait=`` is ``delay`` and ``stop=`` is
        ``exhausted`` (time counted by ``clock`` from ``started``, default now); ``sleep=`` is
        ``sleep``. When the retries stop, the last ``Outcome`` is returned (not
        raised): the caller maps a failed one to its exception. An exception raised by an
        attempt itself is never retried.
        """
        started = self.clock() if started is None else started
        waits: dict[int, float] = {}  # one wait per attempt: the jitter is drawn once

        def outcome(state: tenacity.RetryCallState) -> Outcome:
            assert state.outcome is not None
            result: Outcome = state.outcome.result()
            return result

        def retry(state: tenacity.RetryCallState) -> bool:
            if state.outcome is None or state.outcome.failed:
                return False
            got = outcome(state)
            return not got.ok and self.retryable(status=got.status, idempotent=idempotent, connected=got.connected)

        def wait(state: tenacity.RetryCallState) -> float:
            number = state.attempt_number
            if number not in waits:
                got = outcome(state)
                waits[number] = self.delay(number - 1, got.status, got.headers)
            return waits[number]

        def stop(state: tenacity.RetryCallState) -> bool:
            return self.exhausted(state.attempt_number - 1, self.clock() - started, wait(state),
                                  refused=outcome(state).refused)

        return tenacity.Retrying(
            retry=retry,
            wait=wait,
            stop=stop,
            sleep=self.sleep,
            before_sleep=before_sleep,
            retry_error_callback=outcome,
        )
