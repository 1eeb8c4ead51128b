"""A local Instasent emulator: a real HTTP server that behaves as the public guides describe.

Run it with ``instasent-emulator`` (or ``python -m airflow_provider_instasent.emulator``), or
from Python::

    from airflow_provider_instasent.emulator import running

    with running() as base_url:          # "http://127.0.0.1:PORT"; the API is under /v1
        ...

See ``docs/emulator.md`` for the fixture format, admin endpoints and enforced rules.
"""

from __future__ import annotations

from .faults import FAULT_KINDS, Settings
from .fixture import Fixture, FixtureError, load_fixture
from .runner import Emulator, running
from .store import Store

DEFAULT_TOKENS = {
    "admin": "demo-admin-token",
    "readonly": "demo-readonly-token",
    "datasource": "demo-dsapi-token",
}
DEFAULT_PROJECT = "demo"

__all__ = [
    "DEFAULT_PROJECT",
    "DEFAULT_TOKENS",
    "FAULT_KINDS",
    "Emulator",
    "Fixture",
    "FixtureError",
    "Settings",
    "Store",
    "load_fixture",
    "running",
]
