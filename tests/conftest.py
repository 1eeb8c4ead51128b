"""Shared fixtures: Airflow configured before it is imported, the emulator on a free port,
clients, an Airflow connection, and the real PostgreSQL warehouse.

Airflow reads its configuration at import time, so AIRFLOW_HOME and friends are set here,
before any test module imports it. Each test process (xdist worker) gets its own AIRFLOW_HOME.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The SQL warehouse fixtures (DuckDB, SQLite, PostgreSQL connections and unique tables) are
# shared by the unit, integration and system tests.
pytest_plugins = ["tests.support.sql_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
# One AIRFLOW_HOME (and SQLite metadata DB) per test process: parallel pytest runs never share one.
_HOME = Path(tempfile.mkdtemp(prefix=f"instasent-airflow-{_WORKER}-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags_examples")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.setdefault("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")

ADMIN_TOKEN = "demo-admin-token"
READONLY_TOKEN = "demo-readonly-token"
DSAPI_TOKEN = "demo-dsapi-token"
PROJECT = "demo"


@pytest.fixture(scope="session")
def shared_emulator() -> Iterator[Any]:
    """One in-process emulator per test worker; each suite's fixtures reset it before use."""
    from airflow_provider_instasent.emulator import Emulator

    with Emulator() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def emulator_url(shared_emulator: Any) -> str:
    """The base URL of the worker's emulator, reset before each test that uses ``emu``."""
    return str(shared_emulator.base_url)


@pytest.fixture
def make_emulator() -> Iterator[Any]:
    """Start extra emulators (custom fixtures/settings); all stopped at the end of the test."""
    from airflow_provider_instasent.emulator import Emulator

    started: list[Emulator] = []

    def make(config: Any = None, **kw: Any) -> Emulator:
        emulator = Emulator(config, **kw)
        emulator.start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emu(emulator_url: str) -> str:
    """The shared emulator, reset to its default fixture with faults and limits off."""
    import requests

    requests.post(f"{emulator_url}/_emulator/faults",
                  json={"latency_ms": 0, "rate_limit": None, "fault_rate": 0.0}, timeout=10).raise_for_status()
    requests.post(f"{emulator_url}/_emulator/queue", json={"delay_ms": 0}, timeout=10).raise_for_status()
    requests.post(f"{emulator_url}/_emulator/reset", timeout=10).raise_for_status()
    return emulator_url


def emulator_state(url: str) -> dict:
    import requests

    response = requests.get(f"{url}/_emulator/state", timeout=10)
    response.raise_for_status()
    return response.json()


@pytest.fixture
def client(emu: str):
    """An admin client on the emulator, with fast retries so fault tests do not sleep long."""
    from airflow_provider_instasent import InstasentClient

    with InstasentClient(token=ADMIN_TOKEN, project=PROJECT, base_url=emu, timeout=(5.0, 30.0),
                         backoff_base=0.01, backoff_max=0.2) as c:
        yield c


@pytest.fixture
def instasent_conn(emu: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``instasent_default`` pointing at the emulator, as Airflow reads it from the env."""
    pytest.importorskip("airflow")  # an Airflow connection: skipped in the analyst install
    conn = {"conn_type": "instasent", "host": emu, "password": ADMIN_TOKEN,
            "extra": {"project": PROJECT, "datasource": "dsapi", "max_retries": 5}}
    monkeypatch.setenv("AIRFLOW_CONN_INSTASENT_DEFAULT", json.dumps(conn))
    return emu


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The real PostgreSQL named by INSTASENT_TEST_POSTGRES_URL.

    Not set: skipped outside CI. In CI (``CI`` set) an unset or unreachable server fails.
    """
    url = os.environ.get("INSTASENT_TEST_POSTGRES_URL")
    in_ci = bool(os.environ.get("CI"))
    if not url:
        if in_ci:
            pytest.fail("INSTASENT_TEST_POSTGRES_URL must be set in CI")
        pytest.skip("INSTASENT_TEST_POSTGRES_URL not set")
    import psycopg2

    try:
        psycopg2.connect(url, connect_timeout=5).close()
    except psycopg2.OperationalError as exc:
        if in_ci:
            pytest.fail(f"PostgreSQL at {url} is unreachable in CI: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    return url


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated SQLite metadata DB for ``dag.test()`` (once per worker)."""
    from airflow.utils import db

    db.resetdb()
