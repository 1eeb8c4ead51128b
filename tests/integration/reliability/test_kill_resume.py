"""Kill and resume: SIGKILL the ingesting process part-way, run it again on the same input,
and the emulator ends in the same state as after one clean run.

The emulator runs in its own process (``running(subprocess=True)``, with ``--fault-rate``), the loader in another
(``tests/integration/reliability/ingest_worker.py`` on two Parquet files), and the test process watches
``/_emulator/state`` and kills the loader once part of a phase has landed. Nothing is
checkpointed: the guarantee comes from upserts (contacts) and stable ``_event_id``s (events).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from airflow_provider_instasent import InstasentClient
from airflow_provider_instasent.emulator import running

from . import dataset
from .helpers import assert_rejects, set_faults, state

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
LATENCY_MS = 20  # slows the emulator down so that "part-way" lasts long enough to hit


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[dataset.Dataset, Path]:
    ds = dataset.build(2_000, 12_000, seed=21)
    directory = tmp_path_factory.mktemp("kill-resume")
    pq.write_table(ds.contacts, directory / "contacts.parquet", row_group_size=500)
    pq.write_table(ds.events, directory / "events.parquet", row_group_size=2_000)
    return ds, directory


def start_worker(url: str, directory: Path, out: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.reliability.ingest_worker", url, str(directory / "contacts.parquet"),
         str(directory / "events.parquet"), str(out)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> None:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"worker failed ({proc.returncode}):\n{out}\n{err[-3000:]}"
    assert out.strip().endswith("done")


def snapshot(url: str) -> tuple[dict[str, dict[str, Any]], Counter[tuple[str, ...]]]:
    """Every audience contact (by ``_user_id``, without timestamps and ids) and every event."""
    volatile = {"_date_imported", "_date_updated", "_ds_contact_ids"}
    with InstasentClient(token="demo-admin-token", project="demo", base_url=url) as client:
        contacts = {}
        for contact in client.scroll_audience():
            attrs = {k: v for k, v in contact["attributesData"].items() if k not in volatile}
            assert attrs["_user_id"] not in contacts
            contacts[attrs["_user_id"]] = attrs
        events = Counter(
            (e["_event_id"], e["_user_id"], e["_event_type"], e["_event_date"],
             json.dumps(e["_event_parameters"], sort_keys=True))
            for e in client.scroll_events()
        )
    return contacts, events


@pytest.fixture(scope="module")
def clean_run(source: tuple[dataset.Dataset, Path], tmp_path_factory: pytest.TempPathFactory):
    """The state after one uninterrupted run (in its own emulator)."""
    ds, directory = source
    with running(subprocess=True, latency_ms=LATENCY_MS) as url:
        finish(start_worker(url, directory, tmp_path_factory.mktemp("clean")))
        counts = state(url)
        contacts, events = snapshot(url)
    assert counts["contacts"]["dsapi"] == len(ds.valid_user_ids) == len(contacts)
    assert counts["events"] == len(ds.stored_event_ids) == sum(events.values()) == len(events)
    return counts, contacts, events


@pytest.mark.parametrize("phase", ["contacts", "events"])
def test_sigkill_part_way_then_rerun_equals_one_clean_run(phase, source, clean_run, tmp_path):
    ds, directory = source
    clean_counts, clean_contacts, clean_events = clean_run
    # the command-line emulator also drops or fails 5% of the requests (--fault-rate)
    with running(subprocess=True, latency_ms=LATENCY_MS, fault_rate=0.05, seed=7) as url:
        proc = start_worker(url, directory, tmp_path / "killed")
        deadline = time.monotonic() + 120
        try:
            while True:
                counts = state(url)
                # contacts: as soon as the first request landed (the phase is short); events: 30%
                landed = counts["contacts"]["dsapi"] if phase == "contacts" else counts["events"]
                threshold = 1 if phase == "contacts" else len(ds.stored_event_ids) * 0.3
                if landed >= threshold:
                    break
                assert proc.poll() is None, "the worker finished before it could be killed"
                assert time.monotonic() < deadline
                time.sleep(0.005)
            proc.kill()  # SIGKILL: no cleanup, no finally blocks, requests cut mid-flight
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -9
        partial = state(url)
        if phase == "contacts":
            assert 0 < partial["contacts"]["dsapi"] < len(ds.valid_user_ids) and partial["events"] == 0
        else:
            assert partial["contacts"]["dsapi"] == len(ds.valid_user_ids)
            assert 0 < partial["events"] < len(ds.stored_event_ids)

        # run it again on the same input, from the start
        out = tmp_path / "resumed"
        finish(start_worker(url, directory, out))
        set_faults(url, fault_rate=0.0)
        assert state(url) == clean_counts
        contacts, events = snapshot(url)
    assert contacts == clean_contacts  # no lost contact, every attribute as in the clean run
    assert events == clean_events  # no duplicate and no lost event
    reports = json.loads((out / "reports.json").read_text())
    assert reports["events"]["accepted"] == len(ds.accepted_event_rows)
    assert_rejects(pq.read_table(out / "contacts_rejects.parquet").to_pandas(), ds.bad_contacts)
    assert_rejects(pq.read_table(out / "events_rejects.parquet").to_pandas(), ds.event_rejects)
