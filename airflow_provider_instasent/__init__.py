"""Apache Airflow provider and pandas/Arrow loader for Instasent.

Importing the package (or ``InstasentClient`` from it) imports no Airflow module: the
Airflow parts live in ``hooks/`` and ``operators/`` and load only when used, so a notebook
or a plain script stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .client import InstasentClient

__all__ = ["InstasentClient", "__version__", "get_provider_info"]


def __getattr__(name: str) -> Any:
    if name == "InstasentClient":
        from .client import InstasentClient

        return InstasentClient
    if name == "get_provider_info":
        from .get_provider_info import get_provider_info

        return get_provider_info
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
