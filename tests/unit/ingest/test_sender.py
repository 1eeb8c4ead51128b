"""BoundedPool: at most max_in_flight calls running, a backlog that keeps the threads busy while
the caller is away, and no queued call made after a failure (halt_on_error)."""

from __future__ import annotations

import threading
import time

from airflow_provider_instasent.ingest.sender import BoundedPool, SenderClosed


class Gate:
    """Calls that block until released, counting how many run at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.started: list[int] = []
        self.release = threading.Event()

    def __call__(self, item: int) -> int:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.started.append(item)
        self.release.wait(10)
        with self.lock:
            self.running -= 1
        return item


def _wait_for(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_the_backlog_is_taken_by_the_threads_without_the_caller():
    gate = Gate()
    pool: BoundedPool[int] = BoundedPool(2, backlog=2)
    for i in range(4):  # 2 running + 2 queued: none of these submits blocks
        assert list(pool.submit(gate, i)) == []
    _wait_for(lambda: gate.running == 2)
    gate.release.set()  # the caller does nothing now: the threads must take the queued calls
    _wait_for(lambda: len(gate.started) == 4)
    done = sorted(d.result for d in pool.drain())
    pool.close()
    assert done == [0, 1, 2, 3] and gate.peak == 2


def test_submit_blocks_beyond_max_in_flight_plus_backlog():
    gate = Gate()
    pool: BoundedPool[int] = BoundedPool(1, backlog=1)
    list(pool.submit(gate, 0))
    list(pool.submit(gate, 1))
    got: list[int] = []

    def third() -> None:
        got.extend(d.result for d in pool.submit(gate, 2))  # waits for one of the first two

    t = threading.Thread(target=third)
    t.start()
    time.sleep(0.1)
    assert t.is_alive() and got == []
    gate.release.set()
    t.join(5)
    assert got and set(got) <= {0, 1}
    rest = [d.result for d in pool.drain()]
    pool.close()
    assert sorted(got + rest) == [0, 1, 2]


def test_halt_on_error_makes_no_queued_call_after_a_failure():
    made: list[int] = []
    first_failed = threading.Event()

    def call(item: int) -> int:
        made.append(item)
        if item == 0:
            first_failed.set()
            raise RuntimeError("boom")
        return item

    pool: BoundedPool[int] = BoundedPool(1, backlog=3, halt_on_error=True)
    for i in range(4):
        list(pool.submit(call, i))
    outcomes = list(pool.drain())
    pool.close()
    assert made == [0]
    errors = sorted((type(d.error).__name__, d.item) for d in outcomes)
    assert errors == [("RuntimeError", 0), ("SenderClosed", 1), ("SenderClosed", 2), ("SenderClosed", 3)]
    assert all(isinstance(d.error, (RuntimeError, SenderClosed)) for d in outcomes)
