"""Assertions shared by the reliability tests: rejects against expectations, stored state."""

from __future__ import annotations

from collections import Counter
from typing import Any

import requests

from airflow_provider_instasent.emulator import Emulator

ALL_FAULTS = ["500", "502", "503", "drop_before", "drop_after"]


def state(base_url: str) -> dict[str, Any]:
    """``GET /_emulator/state`` (works for in-process and subprocess emulators)."""
    response = requests.get(f"{base_url}/_emulator/state", timeout=10)
    response.raise_for_status()
    return dict(response.json())


def set_faults(base_url: str, **settings: Any) -> None:
    requests.post(f"{base_url}/_emulator/faults", json=settings, timeout=10).raise_for_status()


def stored_event_ids(emu: Emulator, project: str = "demo") -> Counter[str]:
    """``_event_id`` -> how many stored events carry it (the store itself, not the API)."""
    with emu.store.lock:
        return Counter(e.event_id for e in emu.store.projects[project].events.values())


def stored_contacts(emu: Emulator, datasource: str = "dsapi", project: str = "demo") -> dict[str, dict[str, Any]]:
    """``_user_id`` -> stored attributes of every contact of one datasource."""
    with emu.store.lock:
        contacts = emu.store.projects[project].audience.contacts
        return {key[1]: dict(c.data) for key, c in contacts.items() if key[0] == datasource}


def rejects_by_row(rejects: Any) -> dict[int, list[tuple[str, str, str]]]:
    """``source_row`` -> ``[(field, reason, stage), ...]`` of a rejects DataFrame."""
    out: dict[int, list[tuple[str, str, str]]] = {}
    for row, fld, reason, stage in zip(rejects["source_row"], rejects["field"], rejects["reason"], rejects["stage"]):
        out.setdefault(int(row), []).append((str(fld), str(reason), str(stage)))
    return out


def assert_rejects(rejects: Any, expected: dict[int, tuple[str, str]], stage: str = "local") -> None:
    """Exactly the expected rows are rejected, each with the expected field and reason."""
    got = rejects_by_row(rejects)
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    assert not missing and not extra, f"rows not rejected: {missing[:10]}; rejected unexpectedly: {extra[:10]}"
    for row, (fld, reason) in expected.items():
        assert any(f == fld and reason in r and s == stage for f, r, s in got[row]), \
            f"row {row}: expected {fld!r} / {reason!r} ({stage}), got {got[row]}"


def assert_accounting(report: Any, *, rows: int, rejected: int, skipped: int = 0) -> None:
    assert report.rows == rows
    assert report.accepted + report.rejected + report.unknown + report.skipped == report.rows
    assert (report.rejected, report.skipped) == (rejected, skipped), report.summary()
    assert report.accepted == rows - rejected - skipped
