"""Fixtures of the reliability and security suite.

Most tests run the emulator **in this process** (``Emulator``): its ``store`` lets a test
compare the stored state with the source row by row, not only by counts. One emulator per
xdist worker, reset (data, faults, rate limit, latency) before every test.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_instasent.emulator import Emulator

ADMIN_TOKEN = "demo-admin-token"
READONLY_TOKEN = "demo-readonly-token"
DSAPI_TOKEN = "demo-dsapi-token"
PROJECT = "demo"
FAULTS_OFF: dict[str, Any] = {"latency_ms": 0, "rate_limit": None, "fault_rate": 0.0, "fault_kinds": None,
                              "seed": None}


@pytest.fixture
def emulator(shared_emulator: Emulator) -> Iterator[Emulator]:
    """The worker's in-process emulator: default fixture, no data, no faults."""
    shared_emulator.set_faults(**FAULTS_OFF)
    shared_emulator.reset()
    yield shared_emulator
    shared_emulator.set_faults(**FAULTS_OFF)


def make_client(base_url: str, token: str = ADMIN_TOKEN, **overrides: Any) -> Any:
    """A client with fast backoff (fault tests must not sleep for long) and generous retries."""
    from airflow_provider_instasent import InstasentClient

    options: dict[str, Any] = {"project": PROJECT, "timeout": (5.0, 30.0), "backoff_base": 0.01,
                               "backoff_max": 0.2, "max_retries": 12}
    options.update(overrides)
    return InstasentClient(token=token, base_url=base_url, **options)


@pytest.fixture
def quiet_retries() -> Iterator[None]:
    """Hundreds of retry warnings are expected under fault injection: keep the output short."""
    logger = logging.getLogger("airflow_provider_instasent.client.transport")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)
