"""Per-(token, endpoint class) token buckets and the ``X-RateLimit-*`` headers.

``rate_limit`` N is requests per minute: the bucket refills at N/60 per second and holds
``max(1, ceil(N/60))`` tokens (one second's worth). Without a limit the headers still go out,
with a large limit (``UNLIMITED``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

UNLIMITED = 100_000
ENDPOINT_CLASSES = ("ingest", "hot", "default")
Headers = list[tuple[str, str]]


class RateLimiter:
    def __init__(self, per_minute: float | None = None, clock: Callable[[], float] | None = None) -> None:
        import time

        self._clock = clock or time.time  # the emulator's clock: its windows follow /_emulator/clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], list[float]] = {}
        self.per_minute: float | None = None
        self.configure(per_minute)

    def configure(self, per_minute: float | None) -> None:
        if per_minute is not None and per_minute <= 0:
            raise ValueError("rate_limit must be positive (or null to disable)")
        with self._lock:
            self.per_minute = per_minute
            self._buckets.clear()

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()

    def _capacity(self, per_minute: float) -> float:
        return float(max(1, math.ceil(per_minute / 60.0)))

    def take(self, token: str, endpoint_class: str, *, consume: bool = True) -> tuple[bool, Headers]:
        """Spend one request of the bucket; ``(allowed, headers)``."""
        now = self._clock()
        with self._lock:
            per_minute = self.per_minute
            if per_minute is None:
                return True, [
                    ("X-RateLimit-Limit", str(UNLIMITED)),
                    ("X-RateLimit-Remaining", str(UNLIMITED)),
                    ("X-RateLimit-Reset", str(int(now))),
                ]
            rate = per_minute / 60.0
            capacity = self._capacity(per_minute)
            bucket = self._buckets.get((token, endpoint_class))
            if bucket is None:
                bucket = [capacity, now]
                self._buckets[(token, endpoint_class)] = bucket
            tokens = min(capacity, bucket[0] + (now - bucket[1]) * rate)
            bucket[1] = now
            allowed = tokens >= 1.0
            if allowed and consume:
                tokens -= 1.0
            bucket[0] = tokens
        reset = math.ceil(now + (capacity - tokens) / rate)
        headers: Headers = [
            ("X-RateLimit-Limit", _num(per_minute)),
            ("X-RateLimit-Remaining", str(max(0, math.floor(tokens)))),
            ("X-RateLimit-Reset", str(reset)),
        ]
        if not allowed:
            headers.append(("Retry-After", str(max(1, math.ceil((1.0 - tokens) / rate)))))
        return allowed, headers


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
