"""Queued writes: writes made without ``?_sync`` applied ``delay`` seconds after their request.

Both of Instasent's own integrations make ``_sync`` opt-in and describe it as processing "instead
of queuing" (docs/emulator.md, "Queued writes"). With a delay of 0 (the default) nothing is
queued and every write is applied before its response, as before.

One daemon thread applies the queued writes in the order they were accepted (every write has the
same delay, so that is also the order of their due times). ``WriteQueue.clear`` (on reset)
drops whatever is pending; ``WriteQueue.flush`` applies it at once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

Apply = Callable[[], None]


class WriteQueue:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self._cond = threading.Condition()
        self._pending: deque[tuple[float, int, Apply]] = deque()
        self._generation = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        self._busy = 0  # writes taken off the deque and not yet applied

    @property
    def enabled(self) -> bool:
        return self.delay_s > 0

    def put(self, apply: Apply) -> None:
        """Apply ``apply()`` after the delay (at once, in this thread, if the delay is 0)."""
        if not self.enabled:
            apply()
            return
        with self._cond:
            self._pending.append((time.monotonic() + self.delay_s, self._generation, apply))
            if self._thread is None or not self._thread.is_alive():
                self._closed = False
                self._thread = threading.Thread(
                    target=self._run, name="instasent-emulator-queue", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._pending) + self._busy

    def clear(self) -> None:
        """Drop every pending write (a write being applied right now still completes)."""
        with self._cond:
            self._pending.clear()
            self._generation += 1
            self._cond.notify_all()

    def flush(self, timeout: float = 30.0) -> int:
        """Apply every pending write now; return how many were applied."""
        applied = 0
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                if not self._pending:
                    while self._busy and time.monotonic() < deadline:
                        self._cond.wait(0.05)
                    return applied
                apply = self._take()
            if apply is None:
                continue
            try:
                apply()
                applied += 1
            finally:
                self._done()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._pending.clear()
            self._generation += 1
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._pending:
                        wait = self._pending[0][0] - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait(1.0)
                if self._closed:
                    return
                apply = self._take()
            if apply is None:
                continue
            try:
                apply()
            except Exception:  # an emulator bug: say so, keep the queue running
                import sys
                import traceback

                traceback.print_exc(file=sys.stderr)
            finally:
                self._done()

    def _take(self) -> Apply | None:
        """The next pending write, counted busy; None if a reset dropped it. Hold ``_cond``."""
        _, generation, apply = self._pending.popleft()
        if generation != self._generation:
            return None
        self._busy += 1
        return apply

    def _done(self) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()
