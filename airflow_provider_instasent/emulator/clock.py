"""The emulator's clock: real time, or real time moved by an offset (``/_emulator/clock``).

Every date the server sets reads it: ``_date_updated``/``_date_imported``, an omitted
``_event_date`` and ``receivedAt``, the ±1 h automation window, the rate-limit buckets and
their ``X-RateLimit-Reset``, the relative date filters, and the ``Date`` response header.
Moving it lets a test see "three days later" without waiting; the clock keeps running from
where it was set. ``POST /_emulator/reset`` puts it back on real time.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from email.utils import formatdate


class Clock:
    """Real time plus an offset (0 until moved)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()
        self._http: tuple[int, str] = (0, "")

    def now(self) -> float:
        """The emulator's Unix time, in seconds."""
        return time.time() + self._offset

    @property
    def offset(self) -> float:
        return self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def set(self, timestamp: float) -> None:
        with self._lock:
            self._offset = timestamp - time.time()

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0

    def iso(self) -> str:
        """Now as ISO 8601 UTC with milliseconds (``2026-11-28T09:30:00.000Z``)."""
        return datetime.fromtimestamp(self.now(), UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def http_date(self) -> str:
        """Now as an HTTP ``Date`` value (RFC 9110 IMF-fixdate), formatted once per second."""
        second = int(self.now())
        cached = self._http
        if cached[0] != second:
            cached = (second, formatdate(second, usegmt=True))
            self._http = cached
        return cached[1]
