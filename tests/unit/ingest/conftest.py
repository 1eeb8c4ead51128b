"""Fixtures of the ingest tests (helpers live in ``helpers.py``)."""

from __future__ import annotations

import pytest

from tests.support.ingest_helpers import ATTRIBUTES, EVENT_TYPES, FakeClient


@pytest.fixture
def specs():
    from airflow_provider_instasent.ingest import ProjectSpecs

    return ProjectSpecs.from_specs(ATTRIBUTES, EVENT_TYPES)


@pytest.fixture
def fake_client() -> FakeClient:
    return FakeClient()
