"""Airflow imports that moved between the supported versions (3.0 → 3.3).

Everything comes from the Task SDK (``airflow.sdk``) where it exists; ``BaseHook`` joined the
SDK's public names in 3.1, so 3.0 takes it from ``airflow.hooks.base``.

Importing this module (the hooks and operators packages do, first) checks that Apache Airflow
is installed and supported: without it, an ImportError names the extra that installs it.
"""

from __future__ import annotations

from .get_provider_info import require_airflow

require_airflow()

try:
    from airflow.sdk import BaseHook
except ImportError:  # Airflow 3.0
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef,attr-defined]

try:
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # Airflow 3.0
    from airflow.exceptions import AirflowFailException  # type: ignore[no-redef]

from airflow.sdk import BaseOperator, Context, ObjectStoragePath  # noqa: E402  (after require_airflow)

try:
    from airflow.sdk.observability.stats import Stats
except ImportError:  # Airflow < 3.3
    from airflow.stats import Stats


def default_deferrable() -> bool:
    """Airflow's ``[operators] default_deferrable`` (the convention for ``deferrable=``)."""
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # Airflow 3.0
        from airflow.configuration import conf
    return bool(conf.getboolean("operators", "default_deferrable", fallback=False))


__all__ = ["AirflowFailException", "BaseHook", "BaseOperator", "Context", "ObjectStoragePath", "Stats",
           "default_deferrable"]
