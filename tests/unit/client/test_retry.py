"""Retry/backoff decisions, without sleeping."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from airflow_provider_instasent.client.retry import (
    Outcome,
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


# -- the policy as tenacity's retry=/wait=/stop=/sleep= (no real sleeping) -----------------------
def recorded(**kw) -> tuple[RetryPolicy, list[float]]:
    slept: list[float] = []
    return policy(sleep=slept.append, **kw), slept


def answers(*outcomes: Outcome):
    queue = list(outcomes)
    calls: list[int] = []

    def attempt() -> Outcome:
        calls.append(1)
        return queue.pop(0)

    return attempt, calls


def test_run_retries_until_ok_with_the_policy_waits():
    p, slept = recorded(backoff_base=1, backoff_max=8)
    attempt, calls = answers(Outcome(503), Outcome(None, connected=True), Outcome(429, {"Retry-After": "5"}),
                             Outcome(200, ok=True, data="done"))
    got = p.run(attempt, idempotent=True)
    assert got.ok and got.data == "done" and len(calls) == 4
    assert len(slept) == 3
    assert 0.5 <= slept[0] <= 1 and 1 <= slept[1] <= 2  # exponential backoff with jitter
    assert 5 <= slept[2] <= 5.1  # Retry-After honoured


def test_run_success_first_time_never_sleeps():
    p, slept = recorded()
    attempt, calls = answers(Outcome(200, ok=True))
    assert p.run(attempt, idempotent=True).ok and len(calls) == 1 and slept == []


def test_run_returns_the_last_outcome_when_the_attempts_are_spent():
    p, slept = recorded(max_retries=2, backoff_base=0.01)
    attempt, calls = answers(Outcome(503), Outcome(502), Outcome(500), Outcome(200, ok=True))
    got = p.run(attempt, idempotent=True)
    assert got.status == 500 and not got.ok and len(calls) == 3 and len(slept) == 2


def test_run_stops_before_a_wait_would_pass_the_total_time():
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    p = policy(max_total=10, sleep=sleep, clock=lambda: now[0])
    attempt, calls = answers(Outcome(429, {"Retry-After": "4"}), Outcome(429, {"Retry-After": "4"}),
                             Outcome(429, {"Retry-After": "4"}))

    def timed() -> Outcome:
        now[0] += 1  # each attempt takes a second
        return attempt()

    got = p.run(timed, idempotent=True)
    # 1 s + a 4 s wait + 1 s = 6 s elapsed; another 4 s wait would pass 10 s
    assert got.status == 429 and len(calls) == 2 and len(slept) == 1


def test_run_never_retries_a_client_error_or_an_ambiguous_non_idempotent_failure():
    for outcome, idempotent in [(Outcome(404), True), (Outcome(500), False), (Outcome(None), False)]:
        p, slept = recorded()
        attempt, calls = answers(outcome, Outcome(200, ok=True))
        assert p.run(attempt, idempotent=idempotent) is outcome and len(calls) == 1 and slept == []
    p, slept = recorded()
    attempt, calls = answers(Outcome(None, connected=False), Outcome(200, ok=True))
    assert p.run(attempt, idempotent=False).ok and len(calls) == 2  # never connected: safe to resend


def test_run_does_not_retry_an_exception_raised_by_the_attempt():
    p, slept = recorded()

    def attempt() -> Outcome:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        p.run(attempt, idempotent=True)
    assert slept == []


def test_client_counts_retries_exactly_and_reports_attempts(monkeypatch):
    import requests

    from airflow_provider_instasent.client import InstasentClient, ServerError
    from airflow_provider_instasent.client import endpoints as ep

    def response(status: int, headers: dict[str, str] | None = None) -> requests.Response:
        r = requests.Response()
        r.status_code = status
        r._content = b'{"message": "busy"}' if status >= 400 else b'{"entity": {"id": 1}}'
        r.headers.update(headers or {})
        return r

    p, slept = recorded(max_retries=3, backoff_base=0.01)
    c = InstasentClient(token="t" * 8, project="demo", base_url="http://127.0.0.1:9", pace=False, retry_policy=p)
    queue = [response(503), response(429, {"Retry-After": "2"}), response(200), response(500), response(500),
             response(500), response(500)]
    monkeypatch.setattr(c.session, "request", lambda *a, **k: queue.pop(0))
    assert c.call(ep.PROJECT).data == {"entity": {"id": 1}}
    assert c.stats.snapshot()["requests"] == 3 and c.stats.snapshot()["retries"] == 2
    assert len(slept) == 2 and 2 <= slept[1] <= 2.1
    with pytest.raises(ServerError) as exc:
        c.call(ep.PROJECT)
    assert exc.value.attempts == 4 and "busy" in str(exc.value)
    snap = c.stats.snapshot()
    assert snap["requests"] == 7 and snap["retries"] == 5 and snap["statuses"] == {503: 1, 429: 1, 200: 1, 500: 4}


def test_a_refused_connection_gives_up_within_max_refused():
    policy = RetryPolicy(max_retries=10, max_total=600.0, max_refused=3.0)
    assert not policy.exhausted(1, elapsed=1.0, wait=1.5, refused=True)
    assert policy.exhausted(2, elapsed=2.0, wait=1.5, refused=True)  # past 3 s: nothing is listening
    assert not policy.exhausted(2, elapsed=2.0, wait=1.5)  # other failures keep the long budget
