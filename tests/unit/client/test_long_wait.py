"""``long_wait``: a wait longer than the threshold raises ``LongWaitError`` instead of sleeping
(docs/adr/0009-defer-on-long-waits.md); no sleeping in these tests."""

from __future__ import annotations

import pytest

from airflow_provider_instasent.client.errors import LongWaitError
from airflow_provider_instasent.client.ratelimit import RateLimiter
from airflow_provider_instasent.client.retry import Outcome, RetryPolicy


def test_pacing_past_the_threshold_raises_and_books_no_slot():
    slept: list[float] = []
    now = [1000.0]
    limiter = RateLimiter(clock=lambda: now[0], sleep=slept.append, wall_clock=lambda: 5_000.0)
    limiter.update("ingest", 429, {"X-RateLimit-Limit": "60", "Retry-After": "90"})
    with pytest.raises(LongWaitError) as exc:
        limiter.acquire("ingest", max_wait=60)
    assert exc.value.wait_s == pytest.approx(90) and exc.value.resume_at == pytest.approx(5_090)
    assert exc.value.endpoint_class == "ingest" and not exc.value.may_have_acted and not slept
    assert limiter.acquire("ingest", max_wait=120) == pytest.approx(90)  # nothing booked by the refusal
    assert slept == [pytest.approx(90)]


def test_a_429_asking_for_longer_than_the_threshold_raises_instead_of_retrying():
    slept: list[float] = []
    policy = RetryPolicy(long_wait=60, sleep=slept.append, wall_clock=lambda: 100.0)
    attempts: list[int] = []

    def attempt() -> Outcome:
        attempts.append(1)
        return Outcome(429, {"Retry-After": "3600"})

    with pytest.raises(LongWaitError) as exc:
        policy.run(attempt, idempotent=True)
    assert exc.value.wait_s == 3600 and exc.value.resume_at == 3700 and len(attempts) == 1 and not slept
    # without the threshold the same answer is slept (capped by max_wait) and retried
    policy = RetryPolicy(max_retries=1, sleep=slept.append, wall_clock=lambda: 100.0)
    assert policy.run(attempt, idempotent=True).status == 429 and len(attempts) == 3
    assert 120 <= slept[0] <= 120.1


def test_short_waits_are_still_slept():
    slept: list[float] = []
    policy = RetryPolicy(long_wait=60, sleep=slept.append)
    answers = iter([Outcome(429, {"Retry-After": "2"}), Outcome(200, ok=True)])
    assert policy.run(lambda: next(answers), idempotent=True).ok and 2 <= slept[0] <= 2.1
