"""Progress lines for long runs: one logger for ingest, export and delete.

At most one line every ``interval`` seconds (0 turns them off), each with the count so far,
the total and share when known, the rate, an ETA, and the caller's own details::

    instasent events: 40000/100000 (40.0%) rows read, 9120 rows/s, 39990 accepted, ..., ETA 6s
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["Progress", "duration"]


def duration(seconds: float) -> str:
    """``42s``, ``3m05s`` or ``2h07m``."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


class Progress:
    """Rate-limited progress lines on ``logger`` for the work called ``label``.

    Args:
        logger: where the lines go (an operator passes its task logger).
        label: what is progressing (``"contacts"``, ``"export audience"``...).
        interval: seconds between lines; 0 or less: no lines (except forced ones).
        total: the expected count, when known (gives the share and the ETA).
        unit: the noun after the count (``"rows read"``) and, first word, in the rate.
    """

    def __init__(self, logger: Any, label: str, interval: float, total: int | None = None,
                 unit: str = "rows") -> None:
        self.log = logger
        self.label = label
        self.interval = interval
        self.total = total
        self.unit = unit
        self.started = time.monotonic()
        self.last = self.started

    def tick(self, done: int, details: str = "", *, force: bool = False) -> bool:
        """Log a line if one is due (or ``force``); True when a line was logged."""
        now = time.monotonic()
        if not force and (self.interval <= 0 or now - self.last < self.interval):
            return False
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        where = f"{done}" + (f"/{self.total} ({100.0 * done / self.total:.1f}%)" if self.total else "")
        eta = ""
        if self.total and rate > 0 and done < self.total:
            eta = f", ETA {duration((self.total - done) / rate)}"
        self.log.info("instasent %s: %s %s, %.0f %s/s%s%s", self.label, where, self.unit, rate,
                      self.unit.split()[0], f", {details}" if details else "", eta)
        return True
