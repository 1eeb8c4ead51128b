"""Client-side pacing from X-RateLimit headers, with a fake clock."""

from __future__ import annotations

import pytest

from airflow_provider_instasent.client.ratelimit import RateLimiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def make(safety=1.0, burst_s=0.0):
    t = FakeTime()
    return t, RateLimiter(safety, burst_s=burst_s, clock=t.clock, sleep=t.sleep, wall_clock=lambda: 1_900_000_000.0)


def test_no_pacing_until_a_limit_is_known():
    t, rl = make()
    for _ in range(5):
        assert rl.acquire("ingest") == 0
    assert t.slept == []


def test_paces_at_the_advertised_rate():
    t, rl = make()
    rl.update("ingest", 202, {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "500"})
    for _ in range(11):
        rl.acquire("ingest")
    # 600/min = one request every 0.1 s: 10 gaps in 11 requests
    assert abs(sum(t.slept) - 1.0) < 1e-9


def test_burst_catches_up_unused_budget_but_not_more():
    t, rl = make(burst_s=0.5)
    rl.update("ingest", 202, {"X-RateLimit-Limit": "600"})
    t.now += 10  # idle for a while
    for _ in range(6):  # 0.5 s of budget at 10/s: five immediate, then paced
        rl.acquire("ingest")
    assert t.slept == []
    rl.acquire("ingest")
    assert t.slept == [pytest.approx(0.1)]
    # sustained: the long-run rate stays at the limit
    for _ in range(100):
        rl.acquire("ingest")
    assert sum(t.slept) == pytest.approx(10.1)


def test_classes_have_separate_budgets():
    t, rl = make()
    rl.update("ingest", 202, {"X-RateLimit-Limit": "60"})
    rl.acquire("ingest")
    assert rl.acquire("hot") == 0


def test_exhausted_budget_waits_for_reset():
    t, rl = make()
    rl.update("hot", 429, {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0", "Retry-After": "4"})
    assert rl.acquire("hot") == 4.0


def test_unlimited_is_not_paced():
    t, rl = make()
    rl.update("default", 200, {"X-RateLimit-Limit": "1000000"})
    for _ in range(100):
        rl.acquire("default")
    assert t.slept == []
