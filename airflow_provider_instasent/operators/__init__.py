"""Airflow operators (imported only when used; need ``pip install "airflow-provider-instasent[airflow]"``)."""

from .. import _airflow_compat  # noqa: F401  (a clear ImportError when Airflow is missing)
