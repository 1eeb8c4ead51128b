"""The dataframe loader for analysts: pandas/Arrow in and out of Instasent, no Airflow needed.

Writing (see docs/ingest.md)::

    from airflow_provider_instasent import InstasentClient
    from airflow_provider_instasent.dataframe import write_contacts, write_events

    client = InstasentClient(token="...", project="my-project")
    report = write_contacts(client, df)                       # DataFrame, Arrow, or Parquet path
    report = write_events(client, "orders/*.parquet", event_type="ecommerce_order_create")
    report.rejects                                            # every rejected row, with field and reason

Reading (see docs/export.md)::

    from airflow_provider_instasent.dataframe import read_audience, read_segment, read_events

    audience = read_audience(client)
    pro = read_segment(client, "pro_plan")

These are the same engines the Airflow operators use: one implementation of chunking,
validation, retries and scrolling. Importing this module is cheap: the engines load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .export import (
        read_audience,
        read_audience_arrow,
        read_events,
        read_events_arrow,
        read_segment,
        read_segment_arrow,
    )
    from .ingest import IngestReport, write_contacts, write_events

_WHERE = {
    "write_contacts": ".ingest",
    "write_events": ".ingest",
    "IngestReport": ".ingest",
    "read_audience": ".export",
    "read_segment": ".export",
    "read_events": ".export",
    "read_audience_arrow": ".export",
    "read_segment_arrow": ".export",
    "read_events_arrow": ".export",
}

__all__ = [  # noqa: RUF022  (the order of the docs: writing, then reading)
    "IngestReport",
    "write_contacts",
    "write_events",
    "read_audience",
    "read_segment",
    "read_events",
    "read_audience_arrow",
    "read_segment_arrow",
    "read_events_arrow",
]


def __dir__() -> list[str]:
    """The module's names, the lazily loaded functions included (tab completion in notebooks)."""
    return sorted({*globals(), *__all__})


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __package__), name)
    globals()[name] = value
    return value
