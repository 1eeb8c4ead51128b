"""Sharding for Airflow dynamic task mapping: the public entry point.

The planners and the shard reader live in the I/O layer (``airflow_provider_instasent.io.shards``,
with Parquet discovery in ``airflow_provider_instasent.io.parquet``); the totals of a sharded
run are the ingest report's (``airflow_provider_instasent.ingest.report.aggregate_reports``).
This module names them in one place for DAG authors (docs/scaling.md). No Airflow import.
"""

from __future__ import annotations

from .ingest.report import aggregate_reports
from .io.shards import *  # noqa: F403  (every public name of io.shards)
from .io.shards import __all__ as _SHARD_NAMES

__all__ = [*_SHARD_NAMES, "aggregate_reports"]
