"""`airflow providers list/hooks` show the package and the connection type (real CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _airflow(*args: str) -> str:
    env = dict(os.environ)
    out = subprocess.run([str(Path(sys.executable).parent / "airflow"), *args], capture_output=True, text=True,
                         timeout=180, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_providers_list_and_hooks():
    assert "airflow-provider-instasent" in _airflow("providers", "list")
    hooks = _airflow("providers", "hooks")
    assert "instasent" in hooks and "airflow_provider_instasent.hooks.instasent.InstasentHook" in hooks
