"""Exactly once through a crash: the sender is a real process, SIGKILLed at every step of a send,
then run again; each message is on the emulator exactly once (docs/sms.md, the guarantees table)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ADMIN_TOKEN, PROJECT
from tests.integration.sms.conftest import ledger_rows, sms_to

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
#: kill_child.STEPS (not imported: the child module imports the package at its top)
STEPS = ("before_pending", "before_request", "after_request", "after_answer", "before_ledger_write",
         "after_ledger_write")


def run_child(url: str, state: Path, step: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "tests.integration.sms.kill_child", url, ADMIN_TOKEN, PROJECT,
                           str(state), step],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("step", STEPS)
def test_killed_at_every_step_then_rerun_sends_each_message_once(step, client, recipients, emu, tmp_path):
    state = tmp_path / "ledger.duckdb"
    killed = run_child(emu, state, step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    before = [len(sms_to(client, recipients[u])) for u in ("u1", "u2", "u3")]
    assert before[0] == 1 and before[2] == 0  # the first was sent, the third not reached
    rerun = run_child(emu, state, "none")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert [len(sms_to(client, recipients[u])) for u in ("u1", "u2", "u3")] == [1, 1, 1], rerun.stdout
    assert [(r[0], r[4]) for r in ledger_rows(state)] == [("o1", "sent"), ("o2", "sent"), ("o3", "sent")]
    # the second message went out in the killed run when the kill came after its request
    assert before[1] == (0 if step in ("before_pending", "before_request") else 1)
