"""Airflow operators (imported only when used)."""
