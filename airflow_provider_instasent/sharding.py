"""Sharding for Airflow dynamic task mapping: the public entry point.

The planners and the shard reader live in the I/O layer (:mod:`airflow_provider_instasent.io.shards`,
with Parquet discovery in :mod:`airflow_provider_instasent.io.parquet`); the totals of a sharded
run are the ingest report's (:func:`airflow_provider_instasent.ingest.report.aggregate_reports`).
This module names them in one place for DAG authors (docs/scaling.md). No Airflow import.
"""

from __future__ import annotations

from .ingest.report import aggregate_reports
from .io.shards import (
    DEFAULT_MAX_SHARDS,
    DEFAULT_TARGET_ROWS,
    ShardDescriptor,
    ShardError,
    bounds_query,
    key_range_query,
    list_parquet_files,
    plan_key_ranges,
    plan_key_ranges_from_boundaries,
    plan_parquet_shards,
    plan_sql_shards,
    quantile_query,
    read_shard,
)

__all__ = [
    "DEFAULT_MAX_SHARDS",
    "DEFAULT_TARGET_ROWS",
    "ShardDescriptor",
    "ShardError",
    "aggregate_reports",
    "bounds_query",
    "key_range_query",
    "list_parquet_files",
    "plan_key_ranges",
    "plan_key_ranges_from_boundaries",
    "plan_parquet_shards",
    "plan_sql_shards",
    "quantile_query",
    "read_shard",
]
