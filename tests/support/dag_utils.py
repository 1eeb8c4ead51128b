"""Helpers for running DAGs with ``dag.test()`` in pytest, on Airflow 3.0 to 3.3."""

from __future__ import annotations

from typing import Any


def dagbag_class() -> Any:
    try:  # Airflow >= 3.1
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.0
        from airflow.models.dagbag import DagBag
    return DagBag


def sync_dag_to_db(dag: Any, bundle_name: str = "dags-folder") -> None:
    """Serialize ``dag`` into the metadata DB so ``dag.test()`` can create a DagRun for it."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    DagBundlesManager().sync_bundles_to_db()
    bag = dagbag_class()(collect_dags=False)
    bag.bag_dag(dag)
    try:  # Airflow >= 3.1
        from airflow.dag_processing.dagbag import sync_bag_to_db
    except ImportError:  # Airflow 3.0
        bag.sync_to_db(bundle_name, None)
    else:
        sync_bag_to_db(bag, bundle_name, None)
