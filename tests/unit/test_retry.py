"""Retry/backoff decisions, without sleeping."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from airflow_provider_instasent.client.retry import (
    RetryPolicy,
    is_retryable_status,
    reset_seconds,
    retry_after_seconds,
)

NOW = 1_900_000_000.0


def policy(**kw) -> RetryPolicy:
    return RetryPolicy(rng=random.Random(7), wall_clock=lambda: NOW, **kw)


def test_retry_after_seconds_form():
    assert retry_after_seconds({"Retry-After": "7"}) == 7.0
    assert retry_after_seconds({"retry-after": " 2.5 "}) == 2.5
    assert retry_after_seconds({"Retry-After": "-3"}) == 0.0


def test_retry_after_http_date_form():
    when = datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=42)
    assert retry_after_seconds({"Retry-After": format_datetime(when, usegmt=True)}, now=NOW) == pytest.approx(42)
    past = datetime.fromtimestamp(NOW, UTC) - timedelta(seconds=42)
    assert retry_after_seconds({"Retry-After": format_datetime(past, usegmt=True)}, now=NOW) == 0.0


def test_retry_after_garbage_is_ignored():
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_reset_header_absolute_and_delta():
    assert reset_seconds({"X-RateLimit-Reset": str(int(NOW) + 30)}, now=NOW) == 30
    assert reset_seconds({"X-RateLimit-Reset": "12"}, now=NOW) == 12  # small values are deltas
    assert reset_seconds({"X-RateLimit-Reset": str(int(NOW) - 5)}, now=NOW) == 0
    assert reset_seconds({"X-RateLimit-Reset": "x"}, now=NOW) is None


def test_delay_prefers_retry_after_then_reset_on_429():
    p = policy()
    assert 5.0 <= p.delay(0, 503, {"Retry-After": "5"}) <= 5.1
    assert 20.0 <= p.delay(0, 429, {"X-RateLimit-Reset": str(int(NOW) + 20)}) <= 20.1
    # the reset header only counts for 429s
    assert p.delay(0, 503, {"X-RateLimit-Reset": str(int(NOW) + 20)}) < 1


def test_delay_caps_server_hints():
    p = policy(max_wait=10)
    assert p.delay(0, 429, {"Retry-After": "3600"}) <= 10.1


def test_backoff_grows_exponentially_with_jitter_and_cap():
    p = policy(backoff_base=1, backoff_max=8)
    waits = [p.backoff(i) for i in range(6)]
    for i, w in enumerate(waits):
        ceiling = min(8, 2**i)
        assert ceiling / 2 <= w <= ceiling
    assert max(waits) <= 8


def test_should_retry_statuses():
    p = policy(max_retries=3)
    for status in (429, 500, 502, 503, 504):
        assert p.should_retry(0, 0, 1, status=status, idempotent=True, connected=True)
    for status in (400, 401, 403, 404, 409, 422):
        assert not p.should_retry(0, 0, 1, status=status, idempotent=True, connected=True)
    assert is_retryable_status(599)


def test_should_retry_bounded_by_attempts_and_time():
    p = policy(max_retries=2, max_total=10)
    assert p.should_retry(1, 0, 1, status=503, idempotent=True, connected=True)
    assert not p.should_retry(2, 0, 1, status=503, idempotent=True, connected=True)
    assert not p.should_retry(0, 9.5, 1, status=503, idempotent=True, connected=True)


def test_non_idempotent_requests_only_retry_when_not_processed():
    p = policy()
    assert p.should_retry(0, 0, 1, status=429, idempotent=False, connected=True)
    assert not p.should_retry(0, 0, 1, status=500, idempotent=False, connected=True)
    assert not p.should_retry(0, 0, 1, status=None, idempotent=False, connected=True)  # lost response
    assert p.should_retry(0, 0, 1, status=None, idempotent=False, connected=False)  # refused


def test_zero_retries_disables():
    assert not policy(max_retries=0).should_retry(0, 0, 0, status=503, idempotent=True, connected=True)
