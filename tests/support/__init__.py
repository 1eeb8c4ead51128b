"""Shared test helpers."""

from __future__ import annotations

from typing import Any


def file_object_storage_path(url: str) -> Any:
    """An Airflow ``ObjectStoragePath`` for a ``file://`` URL, or a skip where this Airflow's
    cannot build one (Airflow 3.0 with a newer universal_pathlib refuses the ``file`` protocol)."""
    import pytest

    ObjectStoragePath = pytest.importorskip("airflow.sdk").ObjectStoragePath
    try:
        return ObjectStoragePath(url)
    except TypeError as exc:
        pytest.skip(f"this Airflow's ObjectStoragePath cannot open {url.split(':')[0]}:// URLs: {exc}")


class FakeTI:
    """A task instance that keeps what an operator pushes to XCom (for ``execute()`` tests)."""

    def __init__(self) -> None:
        self.xcom: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.xcom[key] = value
