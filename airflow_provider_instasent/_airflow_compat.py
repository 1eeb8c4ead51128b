"""Airflow imports that moved between the supported versions (3.0 → 3.3).

Everything comes from the Task SDK (``airflow.sdk``) where it exists; ``BaseHook`` joined the
SDK's public names in 3.1, so 3.0 takes it from ``airflow.hooks.base``.
"""

from __future__ import annotations

try:
    from airflow.sdk import BaseHook
except ImportError:  # Airflow 3.0
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef,attr-defined]

try:
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # Airflow 3.0
    from airflow.exceptions import AirflowFailException  # type: ignore[no-redef]

from airflow.sdk import BaseOperator, Context, ObjectStoragePath

__all__ = ["AirflowFailException", "BaseHook", "BaseOperator", "Context", "ObjectStoragePath"]
