"""Concurrent push requests with a bounded number in flight.

The engine's thread prepares requests; a thread pool of ``max_in_flight`` workers sends them
through the (thread-safe, self-pacing) client. The engine never has more than
``max_in_flight`` requests submitted and unanswered: :meth:`Sender.submit` blocks, handing
back finished requests while it waits, so memory stays bounded however fast the source is.

With ``ordered=True`` (contacts) a request that shares a ``_user_id`` with a request still in
flight waits until that one is answered, so the later row of a user is always sent after the
earlier one has been processed: "later row wins", as if the rows were sent one by one.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .encode import Request

if TYPE_CHECKING:
    from ..client import InstasentClient
    from ..client.models import PushResult


class SenderClosed(RuntimeError):
    """The run stopped before this request was sent (it was not sent)."""


@dataclass
class Outcome:
    """A finished request: the API's result, or the exception that ended it."""

    request: Request
    result: PushResult | None = None
    error: BaseException | None = None


class Sender:
    def __init__(self, client: InstasentClient, kind: str, *, max_in_flight: int = 16, dry_run: bool = False,
                 datasource: str | None = None, ordered: bool = False) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.client = client
        self.kind = kind
        self.max_in_flight = max_in_flight
        self.dry_run = dry_run
        self.datasource = datasource
        self.ordered = ordered
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="instasent-push")
        self._done: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._in_flight = 0
        self._users: Counter[str] = Counter()
        self._closed = threading.Event()
        self._pending: dict[int, Request] = {}
        self.submitted = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _send(self, request: Request) -> None:
        try:
            if self._closed.is_set():
                raise SenderClosed("the run stopped before this request was sent")
            result = self.client.push(self.kind, request.body, n_items=request.n_items, dry_run=self.dry_run,
                                      datasource=self.datasource)
            self._done.put(Outcome(request, result=result))
        except BaseException as exc:  # handed to the engine's thread, which decides
            self._done.put(Outcome(request, error=exc))

    def _blocked(self, request: Request) -> bool:
        if self._in_flight >= self.max_in_flight:
            return True
        return self.ordered and any(u in self._users for u in request.user_ids)

    def submit(self, request: Request) -> Iterator[Outcome]:
        """Send ``request`` once a slot is free; yields the requests that finished meanwhile."""
        while self._in_flight and self._blocked(request):
            yield self._take(block=True)
        self._in_flight += 1
        self.submitted += 1
        self._pending[id(request)] = request
        if self.ordered:
            self._users.update(set(request.user_ids))
        self._pool.submit(self._send, request)

    def poll(self) -> Iterator[Outcome]:
        """Finished requests, without waiting."""
        while True:
            try:
                outcome = self._done.get_nowait()
            except queue.Empty:
                return
            yield self._finish(outcome)

    def drain(self) -> Iterator[Outcome]:
        """Wait for every request in flight."""
        while self._in_flight:
            yield self._take(block=True)

    def _take(self, block: bool) -> Outcome:
        return self._finish(self._done.get(block=block))

    def _finish(self, outcome: Outcome) -> Outcome:
        self._in_flight -= 1
        self._pending.pop(id(outcome.request), None)
        if self.ordered:
            self._users.subtract(set(outcome.request.user_ids))
            for user in set(outcome.request.user_ids):
                if self._users[user] <= 0:
                    del self._users[user]
        return outcome

    def close(self, *, cancel: bool = False) -> None:
        if cancel:
            self._closed.set()
        self._pool.shutdown(wait=True, cancel_futures=cancel)

    def unfinished(self) -> list[Request]:
        """After :meth:`close`: requests submitted whose outcome was never taken (cancelled)."""
        return list(self._pending.values())
