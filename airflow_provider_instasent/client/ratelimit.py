"""Client-side pacing that reads the API's ``X-RateLimit-*`` headers.

The API budgets requests per minute, per token and per endpoint class (ingest, the "hot"
scroll/search endpoints, everything else). Instead of running into 429s and sleeping, the
client spaces its requests at a little under the advertised rate, shared by every thread
that uses the same client. When a response says the budget is spent (``Remaining: 0`` or a
429), every thread waits until the advertised reset.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .endpoints import H_LIMIT, H_REMAINING
from .errors import LongWaitError
from .retry import _header, reset_seconds, retry_after_seconds

#: A limit this high (requests/minute) means "effectively unlimited": no pacing.
UNLIMITED = 100_000


@dataclass
class _Budget:
    limit: int | None = None
    next_slot: float = 0.0


class RateLimiter:
    """Paces requests per endpoint class at ``safety`` x the advertised per-minute limit.

    Thread-safe. ``acquire`` blocks (outside the lock) until the caller's slot comes. Up to
    ``burst_s`` seconds of unused budget may be caught up at once, so that a few requests in
    flight with a long latency still use the whole budget; the long-run rate never exceeds
    the advertised limit times ``safety``.
    """

    def __init__(
        self,
        safety: float = 0.95,
        *,
        burst_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < safety <= 1:
            raise ValueError("safety must be in (0, 1]")
        self.safety = safety
        self.burst_s = max(0.0, burst_s)
        self._clock = clock
        self._sleep = sleep
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._budgets: dict[str, _Budget] = {}
        self.waited_s = 0.0

    def limit(self, endpoint_class: str) -> int | None:
        budget = self._budgets.get(endpoint_class)
        return budget.limit if budget else None

    def acquire(self, endpoint_class: str, *, max_wait: float | None = None) -> float:
        """Wait for the next slot of ``endpoint_class``; return the seconds waited.

        A wait longer than ``max_wait`` raises ``LongWaitError`` instead (the slot is not taken).
        """
        with self._lock:
            budget = self._budgets.setdefault(endpoint_class, _Budget())
            now = self._clock()
            if budget.limit and budget.limit < UNLIMITED:
                slot = max(now - self.burst_s, budget.next_slot)
                step = 60.0 / (budget.limit * self.safety)
            else:
                slot, step = max(now, budget.next_slot), 0.0
            wait = slot - now
            if max_wait is not None and wait > max_wait:
                raise LongWaitError(wait, endpoint_class=endpoint_class, resume_at=self._wall() + wait)
            if step:
                budget.next_slot = slot + step
        if wait > 1e-6:
            self._sleep(wait)
            with self._lock:
                self.waited_s += wait
            return wait
        return 0.0

    def update(self, endpoint_class: str, status: int, headers: Mapping[str, str]) -> None:
        """Learn the budget from a response's headers."""
        raw_limit = _header(headers, H_LIMIT)
        raw_remaining = _header(headers, H_REMAINING)
        with self._lock:
            budget = self._budgets.setdefault(endpoint_class, _Budget())
            if raw_limit is not None:
                try:
                    budget.limit = max(1, int(float(raw_limit)))
                except ValueError:
                    pass
            exhausted = status == 429
            if raw_remaining is not None:
                try:
                    exhausted = exhausted or int(float(raw_remaining)) <= 0
                except ValueError:
                    pass
            if exhausted:
                wait = retry_after_seconds(headers, self._wall())
                if wait is None:
                    wait = reset_seconds(headers, self._wall())
                if wait is not None:
                    budget.next_slot = max(budget.next_slot, self._clock() + min(wait, 120.0))
