"""Metrics through Airflow's stats interface (StatsD, Datadog or OpenTelemetry, as configured).

Every name is ``instasent.<operation>.<measure>``; ``operation`` is the operator's
(``ingest``, ``delete``, ``sync``, ``export``). Counters are added once per successful run,
from the run's report and its clients' request counters; timers are in milliseconds.
Tags (for the backends that take them): ``dag_id``, ``task_id``, ``kind`` or ``source``.
The table is in docs/airflow.md; ``METRICS`` is the list the docs and the test check.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

#: measure -> (type, meaning); the name is ``instasent.<operation>.<measure>``
METRICS: dict[str, tuple[str, str]] = {
    "rows": ("counter", "rows read from the source (ingest, sync) or exported (export)"),
    "rows_sent": ("counter", "rows sent to the API (ingest: in push requests; sync: to_send)"),
    "rows_accepted": ("counter", "rows the API accepted"),
    "rows_rejected": ("counter", "rows rejected, locally or by the API"),
    "rows_skipped": ("counter", "rows read and not sent (a stop, a cancelled request)"),
    "requests": ("counter", "HTTP requests made, retries included"),
    "retries": ("counter", "HTTP requests that were retries"),
    "rate_limit_wait": ("timer", "time waited on the rate limit: pacing plus sleeps before retrying a 429"),
    "deferrals": ("counter", "times the task deferred instead of waiting (deferrable=True)"),
    "duration": ("timer", "the run's duration (the successful attempt)"),
}

_ROWS = {  # measure -> the key of the report's counts, per operation
    "ingest": {"rows": "rows", "rows_sent": "sent", "rows_accepted": "accepted", "rows_rejected": "rejected",
               "rows_skipped": "skipped"},
    "sync": {"rows": "rows", "rows_sent": "to_send", "rows_accepted": "accepted", "rows_rejected": "rejected"},
    "delete": {"rows": "requested"},
    "export": {"rows": "rows"},
}


def _stats() -> Any:
    from .._airflow_compat import Stats

    return Stats


def _tags(op: Any) -> dict[str, str]:
    tags = {"dag_id": str(getattr(op, "dag_id", "") or ""), "task_id": str(op.task_id)}
    for name in ("kind", "source"):
        value = getattr(op, name, None)
        if isinstance(value, str):
            tags[name] = value
    return tags


def run_measures(op: Any, result: Mapping[str, Any], seconds: float) -> dict[str, float]:
    """What ``emit_run`` sends for one run: ``{full metric name: value}``."""
    prefix = f"instasent.{op.operation}."
    out: dict[str, float] = {}
    for measure, key in _ROWS.get(op.operation, {}).items():
        value = result.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[prefix + measure] = value
    requests = retries = 0
    waited = 0.0
    for client in getattr(op.hook, "clients", ()):
        snap = client.stats.snapshot()
        requests += snap.get("requests", 0)
        retries += snap.get("retries", 0)
        waited += snap.get("rate_limit_wait_s", 0.0) + getattr(client.rate_limiter, "waited_s", 0.0)
    out[prefix + "requests"] = requests
    out[prefix + "retries"] = retries
    out[prefix + "rate_limit_wait"] = waited * 1000.0
    out[prefix + "duration"] = seconds * 1000.0
    return out


def emit_run(op: Any, result: Mapping[str, Any], seconds: float) -> dict[str, float]:
    """Send one run's counters and timers; returns them (the task log shows them)."""
    stats, tags = _stats(), _tags(op)
    measures = run_measures(op, result, seconds)
    for name, value in measures.items():
        if METRICS[name.rsplit(".", 1)[1]][0] == "timer":
            stats.timing(name, datetime.timedelta(milliseconds=value), tags=tags)
        elif value:
            stats.incr(name, count=int(value), tags=tags)
    op.log.info("metrics: %s", ", ".join(f"{k}={v:g}" for k, v in measures.items()))
    return measures


def emit_deferral(op: Any, wait_s: float) -> None:
    """Count a deferral and the wait it stands for (never raises)."""
    try:
        stats, tags = _stats(), _tags(op)
        stats.incr(f"instasent.{op.operation}.deferrals", tags=tags)
        stats.timing(f"instasent.{op.operation}.rate_limit_wait", datetime.timedelta(seconds=wait_s), tags=tags)
    except Exception:
        op.log.debug("could not emit the deferral metrics", exc_info=True)
