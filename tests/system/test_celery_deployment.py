"""End to end on a real Airflow 3 deployment: PostgreSQL + Redis + CeleryExecutor, two workers.

Runs ``scripts/celery_deployment.py`` on a small input (about 1.5 minutes on 2 cores). Needs
PostgreSQL (trust auth for ``postgres``) and Redis on 127.0.0.1 and the ``celery`` extra:
skipped when one is missing outside CI, failed in CI (``CI`` set).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "celery_deployment.py"

pytestmark = [pytest.mark.slow, pytest.mark.airflow, pytest.mark.integration, pytest.mark.postgres]


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def _require() -> None:
    from urllib.parse import urlsplit

    pg = urlsplit(os.environ.get("INSTASENT_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432"))
    servers = (("PostgreSQL", pg.hostname or "127.0.0.1", pg.port or 5432), ("Redis", "127.0.0.1", 6379))
    missing = [f"{name} ({host}:{port})" for name, host, port in servers if not _reachable(host, port)]
    try:
        import airflow.providers.celery  # noqa: F401
        import redis  # noqa: F401
    except ImportError:
        missing.append("the celery extra (apache-airflow-providers-celery, redis)")
    if missing:
        message = f"needs {', '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.mark.timeout(420)
def test_sharded_backfill_on_two_celery_workers(tmp_path: Path) -> None:
    _require()
    report_path = tmp_path / "report.json"
    argv = [sys.executable, str(SCRIPT), "--events", "20000", "--workers", "2", "--shards", "6",
            "--latency-ms", "10", "--timeout", "180", "--grace", "10", "--json", str(report_path)]
    if os.environ.get("INSTASENT_TEST_POSTGRES_URL"):  # the suite's server; its database is left alone
        argv += ["--pg-url", os.environ["INSTASENT_TEST_POSTGRES_URL"]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}  # not the test suite's config
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=400, env=env, cwd=str(ROOT))
    output = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, output
    report = json.loads(report_path.read_text())
    assert report["ok"], output
    failed = [c for c in report["checks"] if not c["ok"]]
    assert not failed, failed
    names = {c["name"] for c in report["checks"]}
    assert {"run 1: shards ran on every worker", "run 1: emulator holds every valid event exactly once",
            "re-trigger: no duplicate, nothing lost (idempotent)", "shutdown: no process left",
            "metadata database dropped"} <= names
    assert set(report["shards_per_worker"]) == {"worker-1", "worker-2"}
    assert report["runs"][0]["state"] == "success"
    assert report["valid_events"] == 20000 - report["invalid_events"]
