"""Bulk ingest of contacts and events: one engine for the dataframe loader, the Airflow
operators and the benchmarks (see docs/ingest.md and docs/idempotency.md).

::

    from airflow_provider_instasent.ingest import write_contacts, write_events

    report = write_contacts(client, df)
    report = write_events(client, "orders/*.parquet", event_type="ecommerce_order_create",
                          on_invalid="dead_letter", rejects_path="rejects.parquet")

Modules: ``sources`` (inputs → Arrow batches), ``specs`` (datasource specs, JSON
Schema), ``validate`` (vectorised checks of a batch), ``coerce`` (vectorised
coercion of a column), ``rowerrors`` (every error of every row), ``encode`` (JSON
items and request bodies), ``idempotency`` (``_event_id``), ``sender`` (bounded concurrency),
``report`` (report and rejects), ``engine`` (orchestration), ``delete``
(contact deletion).
"""

from __future__ import annotations

from .delete import DeleteReport, delete_contacts
from .engine import IngestOptions, ingest, prepare, write_contacts, write_events
from .errors import (
    AutomationsGuardError,
    IngestError,
    IngestSchemaError,
    RejectedRowsError,
    RequestFailedError,
    SourceReadError,
)
from .idempotency import EventIdDeriver, derive_event_id
from .report import REJECT_COLUMNS, IngestReport
from .sources import SqlSource, open_source
from .specs import ProjectSpecs

__all__ = [
    "REJECT_COLUMNS",
    "AutomationsGuardError",
    "DeleteReport",
    "EventIdDeriver",
    "IngestError",
    "IngestOptions",
    "IngestReport",
    "IngestSchemaError",
    "ProjectSpecs",
    "RejectedRowsError",
    "RequestFailedError",
    "SourceReadError",
    "SqlSource",
    "delete_contacts",
    "derive_event_id",
    "ingest",
    "open_source",
    "prepare",
    "write_contacts",
    "write_events",
]
