"""Fault injection and latency: 5xx, dropped connections before/after applying, run-time changes."""

from __future__ import annotations

import time

import pytest
import requests

from .conftest import Api, order


@pytest.mark.parametrize("kind", ["500", "502", "503"])
def test_5xx_faults_apply_nothing(api: Api, kind: str) -> None:
    api.faults(fault_rate=1.0, fault_kinds=[kind], seed=1)
    r = api.push_contacts([{"_user_id": "u1"}])
    assert r.status_code == int(kind)
    assert "message" in r.json() and r.headers["X-Emulator-Fault"] == kind
    assert api.state()["contacts"]["dsapi"] == 0


def test_drop_before_applies_nothing(api: Api) -> None:
    api.faults(fault_rate=1.0, fault_kinds=["drop_before"])
    with pytest.raises(requests.ConnectionError):
        api.push_contacts([{"_user_id": "u1"}])
    assert api.state()["contacts"]["dsapi"] == 0


def test_drop_after_really_applies_the_write(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1"}])
    api.faults(fault_rate=1.0, fault_kinds=["drop_after"])
    with pytest.raises(requests.ConnectionError):
        api.push_events([order("e1")])
    assert api.state()["events"] == 1
    # the retry a client makes after the lost response is deduplicated by _event_id
    api.faults(fault_rate=0.0)
    assert api.push_events([order("e1")]).status_code == 202
    assert api.state()["events"] == 1


def test_admin_endpoints_are_never_faulted_or_delayed(api: Api) -> None:
    api.faults(fault_rate=1.0, latency_ms=5000)
    for _ in range(3):  # a 5 s delay would trip the 2.5 s timeout
        assert requests.get(api.base_url + "/_emulator/state", timeout=2.5).status_code == 200
    api.faults(fault_rate=0.0, latency_ms=0)


def test_mixed_faults_are_seeded_and_both_drop_kinds_occur(api: Api) -> None:
    def run() -> list[str]:
        api.faults(fault_rate=0.5, seed=42, fault_kinds=None)
        outcomes = []
        for i in range(60):
            session = requests.Session()  # a fresh connection: drops close it
            try:
                r = session.get(
                    api.base_url + "/v1/", headers={"Authorization": "Bearer demo-admin-token"}, timeout=10
                )
                outcomes.append(str(r.status_code))
            except requests.ConnectionError:
                outcomes.append("drop")
            finally:
                session.close()
            del i
        return outcomes

    first, second = run(), run()
    assert first == second  # the same seed gives the same sequence
    assert {"200", "500", "502", "503", "drop"} <= set(first)


def test_both_drop_kinds_happen_for_writes(api: Api) -> None:
    api.push_contacts([{"_user_id": "u1"}])
    api.faults(fault_rate=1.0, fault_kinds=["drop_before", "drop_after"], seed=7)
    for i in range(40):
        with pytest.raises(requests.ConnectionError):
            requests.post(
                api.base_url + "/v1" + api.ds("dsapi", "/stream/events"),
                json=[order(f"e{i}")],
                headers={"Authorization": "Bearer demo-admin-token"},
                timeout=10,
            )
    stored = api.state()["events"]
    assert 0 < stored < 40  # some writes were applied before the drop, some were not


def test_latency_is_added_per_request(make_emulator) -> None:
    emu = make_emulator(latency_ms=150)
    api = Api(emu.base_url)
    t0 = time.perf_counter()
    api.get("/")
    assert time.perf_counter() - t0 >= 0.14


def test_faults_endpoint_validates_and_reports(api: Api) -> None:
    r = requests.post(api.base_url + "/_emulator/faults", json={"fault_rate": 2}, timeout=10)
    assert r.status_code == 400
    r = requests.post(api.base_url + "/_emulator/faults", json={"fault_kinds": ["meteor"]}, timeout=10)
    assert r.status_code == 400
    r = requests.post(api.base_url + "/_emulator/faults", json={"bogus": 1}, timeout=10)
    assert r.status_code == 400
    settings = api.faults(latency_ms=5, fault_rate=0.25, fault_kinds=["503"], seed=3, rate_limit=1000)
    assert settings == {
        "latency_ms": 5,
        "rate_limit": 1000,
        "fault_rate": 0.25,
        "fault_kinds": ["503"],
        "seed": 3,
    }
    assert requests.get(api.base_url + "/_emulator/faults", timeout=10).json() == settings


def test_a_push_is_validated_during_the_latency_and_written_after_it(make_emulator) -> None:
    """The latency is the least time an answer takes: a push is validated while it runs (so
    requests that arrive together do not queue for the emulator's GIL after it) and written once
    it has passed; nothing is stored before then (issue 19)."""
    import threading

    emu = make_emulator(latency_ms=400)
    api = Api(emu.base_url)
    before = api.state()["contacts"].get("dsapi", 0)
    answers: list[tuple[int, float]] = []

    def push() -> None:
        t0 = time.perf_counter()
        r = api.push_contacts([{"_user_id": f"late-{i}"} for i in range(99)] + [{"_user_id": ""}])
        answers.append((r.status_code, time.perf_counter() - t0))

    thread = threading.Thread(target=push)
    thread.start()
    time.sleep(0.15)
    assert api.state()["contacts"].get("dsapi", 0) == before  # not written yet (admin reads are not delayed)
    thread.join(10)
    (status, took), = answers
    assert status == 202 and took >= 0.39
    assert api.state()["contacts"]["dsapi"] == before + 99
