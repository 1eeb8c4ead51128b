"""Operators restate nothing: defaults are the engine's, and every option reaches the engine."""

from __future__ import annotations

import inspect

import pytest

from airflow_provider_instasent.export import engine as export_engine
from airflow_provider_instasent.ingest.engine import DEFAULTS, IngestOptions
from airflow_provider_instasent.operators.export import InstasentToParquetOperator, _InstasentExportBase
from airflow_provider_instasent.operators.ingest import (
    InstasentDeleteContactsOperator,
    InstasentIngestOperator,
)


def _defaults(cls: type) -> dict[str, object]:
    return {n: p.default for n, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize("cls", [InstasentIngestOperator, InstasentDeleteContactsOperator])
def test_ingest_operator_defaults_are_the_engines(cls):
    shared = {k: v for k, v in _defaults(cls).items() if k in DEFAULTS and k not in ("rejects_path", "rejects_table")}
    assert shared, "the operator takes engine options"
    assert shared == {k: DEFAULTS[k] for k in shared}


def test_export_operator_defaults_are_the_engines():
    ours = _defaults(_InstasentExportBase)
    engine = _defaults(export_engine.Export)
    for name in ("batch_size", "page_size", "prefetch_pages", "progress_interval", "total_tolerance"):
        assert ours[name] == engine[name], name


def test_every_ingest_option_reaches_the_engine():
    """Each operator argument that is an engine option arrives with the value given."""
    given = {
        "event_type": "order", "columns": {"a": "_user_id"}, "on_invalid": "skip", "max_rejected_ratio": 0.5,
        "automations": "warn", "nulls": "null", "assume_timezone": "Europe/Madrid", "event_id_fields": ["a"],
        "unknown_columns": "ignore", "max_in_flight": 3, "batch_rows": 77, "max_request_bytes": 4096,
        "preflight": True, "progress_interval": 1.5, "sync": True, "check_contacts": True,
        "invalid_values": "drop_value", "verify": True, "verify_wait_s": 2.0, "contacts_from": "c.parquet",
        "create_missing_contacts": True,
    }
    op = InstasentIngestOperator(task_id="t", kind="events", path="x.parquet", datasource="ds2", dry_run=False,
                                 **given)
    options = op._options()
    IngestOptions(kind="events", **{**options, **given})  # a valid set
    for name, value in given.items():
        assert options[name] == value, name
    assert options["datasource"] == "ds2" and options["dry_run"] is False
    assert set(options) <= IngestOptions.names()
    not_forwarded = set(_defaults(InstasentIngestOperator)) & IngestOptions.names() - set(options)
    assert not_forwarded == set(), f"operator arguments never passed to the engine: {not_forwarded}"
    assert op.client_kwargs() == {}  # the engine sizes the pool (reserve_connections)


def test_parquet_target_is_resolved_in_the_operator(tmp_path):
    op = InstasentToParquetOperator(task_id="p", path=str(tmp_path / "a.parquet"))
    assert op.hook is op.hook  # one hook per task instance
