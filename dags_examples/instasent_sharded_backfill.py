"""Sharded backfill: a large Parquet dataset into Instasent, spread over every Airflow worker.

``plan`` cuts the dataset into shards of about ``rows_per_shard`` rows (row-group ranges of
its files, see ``airflow_provider_instasent.sharding``) and returns one set of arguments per
shard; ``ingest_shard`` (``InstasentIngestOperator`` with ``python_callable=read_shard``) is
mapped over them with ``.partial().expand_kwargs()``, so each shard is a task instance of its
own that any worker (Celery, Kubernetes pod, local process) can run and retry; ``summarize``
adds up the shard reports (``IngestReport.to_dict()``).

Rate budget. All shards of all runs share the API's rate limit, so every ``ingest_shard``
takes ``pool_slots = MAX_IN_FLIGHT`` slots of the **``instasent_api`` pool** and keeps at
most that many requests in flight. The pool's size is then the deployment-wide number of
concurrent API requests, whatever the number of workers: size it from the rate limit (see
docs/scaling.md) and create it before the first run, for example::

    airflow pools set instasent_api 16 "Instasent API: concurrent requests"

(a task whose pool does not exist is never queued.) Lower ``max_in_flight`` per run with
the ``max_in_flight`` param; the slots taken stay ``MAX_IN_FLIGHT``.

Idempotency. A shard can run any number of times: events carry a stable ``_event_id`` (the
source's, or one derived from the row's position when ``event_id_prefix`` is set) and the
API drops the ones it already holds; contacts are upserts. Retries and re-triggers never
duplicate anything.

Contacts first. Events of a ``_user_id`` the datasource does not know are accepted but not
stored: backfill the contacts (``kind=contacts``) before their events.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from airflow_provider_instasent.operators.ingest import InstasentIngestOperator
from airflow_provider_instasent.sharding import read_shard

log = logging.getLogger(__name__)

INSTASENT_CONN_ID = "instasent_default"
POOL = "instasent_api"
# Pool slots taken by each shard = its maximum number of requests in flight. Fixed when the
# DAG is parsed (pool_slots cannot be mapped); the max_in_flight param can only lower it.
MAX_IN_FLIGHT = 4


def _params() -> dict[str, Any]:
    return dict(get_current_context()["params"])


@dag(
    dag_id="instasent_sharded_backfill",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["instasent", "example", "backfill"],
    doc_md=__doc__,
    default_args={
        "owner": "instasent",
        "retries": 3,
        "retry_delay": timedelta(seconds=10),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=5),
    },
    params={
        "path": Param(
            "/data/instasent/backfill/events",
            type="string",
            minLength=1,
            description="Parquet file, directory, glob or URI (s3://, gs://...) readable by every worker.",
        ),
        "kind": Param("events", enum=["events", "contacts"], description="What the rows are."),
        "event_type": Param(
            "page_view",
            type=["string", "null"],
            description="Event type of every row; empty/null to read it from an _event_type column.",
        ),
        "event_id_prefix": Param(
            None,
            type=["string", "null"],
            description="Only for data without an _event_id column: derive one from the row's position "
                        "(<prefix><file>:<row group>:<row>), stable across retries.",
        ),
        "rows_per_shard": Param(50_000, type="integer", minimum=1, description="Target rows per shard."),
        "max_shards": Param(512, type="integer", minimum=1, maximum=1024,
                            description="Cap on the number of shards (Airflow's max_map_length is 1024)."),
        "min_shards": Param(1, type="integer", minimum=1, description="At least this many shards."),
        "max_in_flight": Param(MAX_IN_FLIGHT, type="integer", minimum=1, maximum=MAX_IN_FLIGHT,
                               description="Concurrent requests per shard (at most the pool slots it takes)."),
        "batch_rows": Param(10_000, type="integer", minimum=100, description="Rows read per batch."),
        "dry_run": Param(False, type="boolean", description="Validate with the API (_dryRun), store nothing."),
        "max_rejected_ratio": Param(0.05, type="number", minimum=0, maximum=1,
                                    description="Fail the run when more rows than this share are rejected."),
    },
)
def instasent_sharded_backfill() -> None:
    @task(retries=1)
    def plan() -> list[dict[str, Any]]:
        """Cut the dataset into shards (reads Parquet footers only); one kwargs dict per shard."""
        from airflow_provider_instasent.sharding import plan_parquet_shards

        p = _params()
        shards = plan_parquet_shards(
            p["path"],
            target_rows=int(p["rows_per_shard"]),
            max_shards=int(p["max_shards"]),
            min_shards=int(p["min_shards"]),
        )
        log.info("Planned %d shards, %d rows, from %s", len(shards), sum(s["rows"] for s in shards), p["path"])
        events = p["kind"] == "events"
        return [
            {
                "kind": p["kind"],
                "event_type": (p.get("event_type") or None) if events else None,
                "max_in_flight": min(int(p["max_in_flight"]), MAX_IN_FLIGHT),
                "dry_run": bool(p["dry_run"]),
                "op_kwargs": {
                    "descriptor": shard,
                    "batch_size": int(p["batch_rows"]),
                    "event_id_prefix": (p.get("event_id_prefix") or None) if events else None,
                },
            }
            for shard in shards
        ]

    # One mapped task instance per shard: read_shard streams the shard's row groups into the
    # ingest engine. Invalid rows are skipped and counted (summarize enforces the budget).
    ingest_shard = InstasentIngestOperator.partial(
        task_id="ingest_shard",
        instasent_conn_id=INSTASENT_CONN_ID,
        python_callable=read_shard,
        on_invalid="skip",
        preflight=False,
        pool=POOL,
        pool_slots=MAX_IN_FLIGHT,
        execution_timeout=timedelta(hours=3),
        map_index_template="{{ task.op_kwargs['descriptor']['shard_id'] }}",
    ).expand_kwargs(plan())

    @task(retries=0)
    def summarize(reports: list[dict[str, Any]]) -> dict[str, Any]:
        """Totals over all shards; fails the run when too many rows were rejected."""
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_provider_instasent.sharding import aggregate_reports

        context = get_current_context()
        p = dict(context["params"])
        # reports[:] fetches every shard's report in one request (iterating asks one by one)
        totals = aggregate_reports(reports[:])
        started = getattr(context.get("dag_run"), "start_date", None)
        if started is not None:
            run_seconds = (pendulum.now("UTC") - started).total_seconds()
            totals["run_seconds"] = round(run_seconds, 3)
            totals["run_rows_per_second"] = round(totals["rows"] / run_seconds, 1) if run_seconds > 0 else None
        log.info(
            "Backfill of %s: %d shards, %d rows, %d accepted, %d rejected, %d requests, %d retries, "
            "%.1f task-seconds, %s s since the run started",
            p["path"], totals["shards"], totals["rows"], totals["accepted"], totals["rejected"], totals["requests"],
            totals["retries"], totals["task_seconds"], totals.get("run_seconds"),
        )
        if totals["rows"] and totals["rejected"] / totals["rows"] > float(p["max_rejected_ratio"]):
            raise AirflowFailException(
                f"{totals['rejected']} of {totals['rows']} rows rejected, over max_rejected_ratio "
                f"{p['max_rejected_ratio']}"
            )
        return totals

    summarize(ingest_shard.output)  # type: ignore[arg-type]


instasent_sharded_backfill()
