"""Export the unified audience, a segment's contacts or audience events.

Dataframe API (no Airflow import)::

    from airflow_provider_instasent.export import read_audience, read_events_arrow

    df = read_audience(client)                      # pandas DataFrame, stable columns
    for batch in read_events_arrow(client):         # pyarrow.RecordBatchReader, flat memory
        ...
    changed = read_audience(client, since="2026-11-27T02:00:00Z")   # only what changed since then

The SQL and Parquet writers of the I/O layer (``airflow_provider_instasent.io``) and the
operators in ``airflow_provider_instasent.operators.export`` build on the same ``Export``
engine.
See docs/export.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from ..client import InstasentClient
from ..io.sql import TableName
from .convert import InvalidValues
from .engine import DEFAULT_BATCH_SIZE, Export, ExportStats, privacy_level
from .schema import ExportSchema, audience_schema, events_schema

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "Export",
    "ExportSchema",
    "ExportStats",
    "InvalidValues",
    "TableName",
    "audience_schema",
    "events_schema",
    "privacy_level",
    "read_audience",
    "read_audience_arrow",
    "read_events",
    "read_events_arrow",
    "read_segment",
    "read_segment_arrow",
]


def _to_pandas(reader: pa.RecordBatchReader, dtype_backend: str | None) -> Any:
    table = reader.read_all()
    if dtype_backend is None:
        return table.to_pandas()
    import pandas as pd

    if dtype_backend == "pyarrow":
        return table.to_pandas(types_mapper=pd.ArrowDtype)
    if dtype_backend == "numpy_nullable":
        mapping = {
            pa.int64(): pd.Int64Dtype(),
            pa.float64(): pd.Float64Dtype(),
            pa.bool_(): pd.BooleanDtype(),
            pa.string(): pd.StringDtype(),
        }
        return table.to_pandas(types_mapper=mapping.get)
    raise ValueError(f"dtype_backend must be None, 'numpy_nullable' or 'pyarrow'; got {dtype_backend!r}")


#: The join key that ``attributes=[...]`` keeps unless ``keep_user_id=False``.
USER_ID = "_user_id"


def _with_user_id(attributes: Sequence[str] | None, keep_user_id: bool) -> list[str] | None:
    """``attributes`` with ``_user_id`` first when it is missing and ``keep_user_id`` (``None``: all)."""
    if attributes is None:
        return None
    chosen = [attributes] if isinstance(attributes, str) else list(attributes)
    return [USER_ID, *chosen] if keep_user_id and USER_ID not in chosen else chosen


def read_audience_arrow(
    client: InstasentClient,
    filter: Mapping[str, Any] | None = None,
    *,
    attributes: Sequence[str] | None = None,
    keep_user_id: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    page_size: int = 100,
    since: dt.datetime | str | None = None,
) -> pa.RecordBatchReader:
    """The unified audience as a streaming ``pyarrow.RecordBatchReader``.

    ``filter`` is an AudienceQueryFilter ``root`` (or ``{"root": ...}``); ``attributes``
    restricts the attribute columns, and keeps ``_user_id`` (the join key, as the first
    attribute) unless ``keep_user_id=False``. ``since`` (a timezone-aware datetime or ISO
    8601 text): only the contacts updated at or after it (docs/export.md, "Incremental
    export"). The scroll starts on the first read.
    """
    return Export(client, "audience", filter=filter, attributes=_with_user_id(attributes, keep_user_id),
                  batch_size=batch_size, page_size=page_size, since=since).reader()


def read_segment_arrow(
    client: InstasentClient,
    segment_uid: str,
    parameter: str | None = None,
    *,
    filter: Mapping[str, Any] | None = None,
    attributes: Sequence[str] | None = None,
    keep_user_id: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    page_size: int = 100,
    since: dt.datetime | str | None = None,
) -> pa.RecordBatchReader:
    """A segment's contacts (same schema as the audience) as a RecordBatchReader.

    ``attributes`` keeps ``_user_id`` unless ``keep_user_id=False``, and ``since`` reads only
    the contacts updated since then, as in ``read_audience_arrow``.
    """
    return Export(client, "segment", segment=segment_uid, parameter=parameter, filter=filter,
                  attributes=_with_user_id(attributes, keep_user_id), batch_size=batch_size,
                  page_size=page_size, since=since).reader()


def read_events_arrow(
    client: InstasentClient,
    filter: Mapping[str, Any] | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    page_size: int = 100,
    since: dt.datetime | str | None = None,
) -> pa.RecordBatchReader:
    """Audience events as a RecordBatchReader (``filter``: an EventQueryFilter ``root``;
    ``since``: only the events dated at or after it)."""
    return Export(client, "events", filter=filter, batch_size=batch_size, page_size=page_size,
                  since=since).reader()


def read_audience(
    client: InstasentClient,
    filter: Mapping[str, Any] | None = None,
    *,
    attributes: Sequence[str] | None = None,
    keep_user_id: bool = True,
    dtype_backend: str | None = None,
    since: dt.datetime | str | None = None,
) -> Any:
    """The unified audience as a pandas DataFrame (columns from ``/specs/attributes``).

    ``attributes`` restricts the attribute columns and keeps ``_user_id`` (the join key)
    unless ``keep_user_id=False``. ``dtype_backend``: ``None`` (pyarrow's default
    conversion), ``"numpy_nullable"`` or ``"pyarrow"`` (``pd.ArrowDtype`` columns, lists stay lists).
    ``since`` (a timezone-aware datetime or ISO 8601 text): only the contacts updated at or
    after it, read narrowly (docs/export.md, "Incremental export").
    """
    return _to_pandas(read_audience_arrow(client, filter, attributes=attributes, keep_user_id=keep_user_id,
                                          since=since), dtype_backend)


def read_segment(
    client: InstasentClient,
    segment_uid: str,
    parameter: str | None = None,
    *,
    filter: Mapping[str, Any] | None = None,
    attributes: Sequence[str] | None = None,
    keep_user_id: bool = True,
    dtype_backend: str | None = None,
    since: dt.datetime | str | None = None,
) -> Any:
    """A segment's contacts as a pandas DataFrame (``parameter`` for parameterised segments;
    ``attributes`` keeps ``_user_id`` unless ``keep_user_id=False``; ``since``: only the
    contacts updated since then)."""
    return _to_pandas(read_segment_arrow(client, segment_uid, parameter, filter=filter, attributes=attributes,
                                         keep_user_id=keep_user_id, since=since), dtype_backend)


def read_events(
    client: InstasentClient,
    filter: Mapping[str, Any] | None = None,
    *,
    dtype_backend: str | None = None,
    since: dt.datetime | str | None = None,
) -> Any:
    """Audience events as a pandas DataFrame (``_event_parameters`` is a JSON string;
    ``since``: only the events dated at or after it)."""
    return _to_pandas(read_events_arrow(client, filter, since=since), dtype_backend)
