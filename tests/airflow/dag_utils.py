"""Helpers for running DAGs with ``dag.test()`` in pytest (Airflow 3)."""

from __future__ import annotations

from typing import Any


def sync_dag_to_db(dag: Any, bundle_name: str = "dags-folder") -> None:
    """Serialize ``dag`` into the metadata DB so ``dag.test()`` can create a DagRun for it."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, bundle_name, None)
