"""Airflow hooks (need Apache Airflow: ``pip install "airflow-provider-instasent[airflow]"``)."""

from .. import _airflow_compat  # noqa: F401  (a clear ImportError when Airflow is missing)
