"""Rate limits: per (token, endpoint class) token buckets, 429 and headers."""

from __future__ import annotations

import time

import requests

from .conftest import Api


def test_429_with_headers_and_retry_after(make_emulator) -> None:
    emu = make_emulator(rate_limit=60)  # 1 request/s, bucket of 1
    api = Api(emu.base_url)
    first = api.get(api.p())
    assert first.status_code == 200
    assert first.headers["X-RateLimit-Limit"] == "60"
    assert first.headers["X-RateLimit-Remaining"] == "0"
    reset = int(first.headers["X-RateLimit-Reset"])
    assert time.time() - 1 <= reset <= time.time() + 2
    second = api.get(api.p())
    assert second.status_code == 429
    assert second.json() == {"message": "You exceeded the rate limit"}
    assert int(second.headers["Retry-After"]) >= 1
    for h in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        assert h in second.headers
    # admin endpoints are never rate limited
    for _ in range(5):
        assert requests.get(emu.base_url + "/_emulator/state", timeout=10).status_code == 200


def test_buckets_are_per_token_and_endpoint_class(make_emulator) -> None:
    emu = make_emulator(rate_limit=120)  # bucket of 2
    api = Api(emu.base_url)
    statuses = [api.get(api.p()).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert api.push_contacts([{"_user_id": "u1"}]).status_code == 202  # ingest class: its own budget
    assert api.post(api.p("/audience/scroll"), json={}).status_code == 200  # hot class
    assert api.as_token("demo-readonly-token").get(api.p()).status_code == 200  # another token


def test_bucket_refills(make_emulator) -> None:
    emu = make_emulator(rate_limit=600)  # 10/s, bucket of 10
    api = Api(emu.base_url)
    codes = [api.get("/").status_code for _ in range(15)]
    assert codes.count(429) >= 1
    time.sleep(0.35)
    assert api.get("/").status_code == 200


def test_rate_limit_changed_at_run_time(api: Api) -> None:
    settings = api.faults(rate_limit=60)
    assert settings["rate_limit"] == 60
    assert api.get("/").status_code == 200
    assert api.get("/").status_code == 429
    api.faults(rate_limit=None)
    assert all(api.get("/").status_code == 200 for _ in range(20))
