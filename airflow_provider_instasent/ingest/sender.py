"""Concurrent API calls with a bounded number in flight: the one worker pool of the package.

``BoundedPool`` runs calls on ``max_in_flight`` threads (so at most ``max_in_flight``
requests are on the wire) and never has more than ``max_in_flight + backlog`` submitted and
unanswered: ``BoundedPool.submit`` blocks, handing back finished calls while it waits, so
memory stays bounded however fast the caller produces work. The backlog (by default one more
request per thread) is what keeps every thread busy while the caller's thread is away
preparing the next batch: a thread that finishes takes the next queued call at once instead
of waiting for the caller to submit one (docs/performance.md, "Ingest at the concurrency
limit").

``Sender`` is the push sender of the ingest engine on top of it: the engine's thread
prepares requests, the pool sends them through the (thread-safe, self-pacing) client. The
order of a contacts run ("later row wins": a user's later row is sent only once its earlier
one is answered) is the chunker's (``Chunker(hold_back=True)``), not the pool's: the pool
sends what it is given. The contact deletes (``delete``) use the pool directly.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .encode import Request

if TYPE_CHECKING:
    from ..client import InstasentClient
    from ..client.models import PushResult

T = TypeVar("T")


class SenderClosed(RuntimeError):
    """The run stopped before this call was made (nothing was sent)."""


@dataclass
class Done(Generic[T]):
    """A finished call: the work item it was submitted with, and its result or exception."""

    item: T
    result: Any = None
    error: BaseException | None = None
    seq: int = 0


class BoundedPool(Generic[T]):
    """At most ``max_in_flight`` calls submitted and unanswered (see the module doc).

    ``client``: the client the calls use; its connection pool is made at least
    ``max_in_flight`` wide (``reserve_connections``), so no request waits for a connection.
    ``backlog``: calls queued beyond the ``max_in_flight`` running ones (default
    ``max_in_flight``). ``halt_on_error``: once a call raises, the queued calls are not made
    (they finish with ``SenderClosed``), as if the caller had stopped submitting at that moment.
    """

    def __init__(self, max_in_flight: int, *, name: str = "instasent", client: Any = None,
                 backlog: int | None = None, halt_on_error: bool = False) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        reserve = getattr(client, "reserve_connections", None)
        if callable(reserve):
            reserve(max_in_flight)
        self.max_in_flight = max_in_flight
        self.backlog = max_in_flight if backlog is None else max(0, backlog)
        self._limit = max_in_flight + self.backlog
        self.halt_on_error = halt_on_error
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix=name)
        self._done: queue.SimpleQueue[Done[T]] = queue.SimpleQueue()
        self._in_flight = 0
        self._closed = threading.Event()
        self._pending: dict[int, T] = {}
        self._seq = 0

    def _run(self, call: Callable[[T], Any], item: T, seq: int) -> None:
        try:
            if self._closed.is_set():
                raise SenderClosed("the run stopped before this call was made")
            self._done.put(Done(item, result=call(item), seq=seq))
        except BaseException as exc:  # handed to the caller's thread, which decides
            if self.halt_on_error and not isinstance(exc, SenderClosed):
                self._closed.set()
            self._done.put(Done(item, error=exc, seq=seq))

    def submit(self, call: Callable[[T], Any], item: T) -> Iterator[Done[T]]:
        """Queue ``call(item)`` once fewer than ``max_in_flight + backlog`` calls are unanswered;
        yields the calls that finished meanwhile."""
        while self._in_flight >= self._limit:
            yield self._take()
        self._in_flight += 1
        self._seq += 1
        self._pending[self._seq] = item
        self._pool.submit(self._run, call, item, self._seq)

    def poll(self) -> Iterator[Done[T]]:
        """Finished calls, without waiting."""
        while True:
            try:
                done = self._done.get_nowait()
            except queue.Empty:
                return
            yield self._finish(done)

    def drain(self) -> Iterator[Done[T]]:
        """Wait for every call in flight."""
        while self._in_flight:
            yield self._take()

    def _take(self) -> Done[T]:
        return self._finish(self._done.get())

    def _finish(self, done: Done[T]) -> Done[T]:
        self._in_flight -= 1
        self._pending.pop(done.seq, None)
        return done

    def close(self, *, cancel: bool = False) -> None:
        """Wait for the threads; ``cancel``: calls not started yet are not made."""
        if cancel:
            self._closed.set()
        self._pool.shutdown(wait=True, cancel_futures=cancel)

    def unfinished(self) -> list[T]:
        """After ``close``: items submitted whose outcome was never taken (cancelled)."""
        return list(self._pending.values())


@dataclass
class Outcome:
    """A finished push request: the API's result, or the exception that ended it."""

    request: Request
    result: PushResult | None = None
    error: BaseException | None = None


class Sender:
    """Push requests of one ingest run through a ``BoundedPool`` (see the module doc)."""

    def __init__(self, client: InstasentClient, kind: str, *, max_in_flight: int = 16, dry_run: bool = False,
                 datasource: str | None = None, sync: bool = False) -> None:
        self.client = client
        self.kind = kind
        self.dry_run = dry_run
        self.sync = sync
        self.datasource = datasource
        # A failed push stops the run (the engine): the requests queued behind it are not sent.
        self._pool: BoundedPool[Request] = BoundedPool(max_in_flight, name="instasent-push", client=client,
                                                       halt_on_error=True)

    def _send(self, request: Request) -> PushResult:
        if self.sync:  # only when asked: a client without the flag still works
            return self.client.push(self.kind, request.body, n_items=request.n_items, dry_run=self.dry_run,
                                    datasource=self.datasource, sync=True)
        return self.client.push(self.kind, request.body, n_items=request.n_items, dry_run=self.dry_run,
                                datasource=self.datasource)

    @staticmethod
    def _outcome(done: Done[Request]) -> Outcome:
        return Outcome(done.item, result=done.result, error=done.error)

    def submit(self, request: Request) -> Iterator[Outcome]:
        """Send ``request`` once a slot is free; yields the requests that finished meanwhile."""
        for done in self._pool.submit(self._send, request):
            yield self._outcome(done)

    def poll(self) -> Iterator[Outcome]:
        """Finished requests, without waiting."""
        for done in self._pool.poll():
            yield self._outcome(done)

    def drain(self) -> Iterator[Outcome]:
        """Wait for every request in flight."""
        for done in self._pool.drain():
            yield self._outcome(done)

    def close(self, *, cancel: bool = False) -> None:
        self._pool.close(cancel=cancel)

    def unfinished(self) -> list[Request]:
        """After ``close``: requests submitted whose outcome was never taken (cancelled)."""
        return self._pool.unfinished()
