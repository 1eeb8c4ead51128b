"""The operators need Apache Airflow: without it (the analyst's install) these tests are not collected."""

import importlib.util

if importlib.util.find_spec("airflow") is None:
    collect_ignore_glob = ["test_*.py"]
