"""validate: validation + encoding of ``ecommerce_order_create`` events, one core.

The engine's ``prepare()`` takes an Arrow table of orders (``_event_id``, ``_user_id``,
``_event_date``, ``order_id``, ``amount``, ``currency``, ``items``; 0.4% of the rows invalid on
purpose) to request bodies of 100 items (validated, coerced, JSON-encoded, chunked), without
sending. Baselines, same data, same process: the engine's own published JSON Schema
(``ProjectSpecs.validator``: jsonschema, Draft 2020-12, ``iter_errors`` per row) and the same
schema compiled by ``fastjsonschema`` (per row). The baselines only *validate* items that were
already built as API dicts before the clock started; the engine is timed from the Arrow table
to the encoded bodies. That favours the baselines.

Runs in a child process with every thread pool set to one thread
(``pa.set_cpu_count(1)``, ``pa.set_io_thread_count(1)``, ``OMP_NUM_THREADS=1``...). Rates are
computed from the child's CPU time (one core's worth of work, insensitive to other jobs on a
shared machine); wall-clock rates are reported next to them.
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

from common import (
    EVENT_TYPE,
    ONE_CORE_ENV,
    Config,
    Section,
    child_output,
    fmt_pct,
    fmt_rate,
    fmt_ratio,
    median,
    run_child,
    verdict,
)

NAME = "validate"
TITLE = "Validation + encoding, one core"
TARGET_RATE = 300_000
TARGET_RATIO = 15.0


def run(cfg: Config) -> Section:
    sec = Section(NAME, TITLE)
    rows = 20_000 if cfg.quick else 200_000
    sample = 2_000 if cfg.quick else 20_000
    runs = cfg.n_runs(5, quick=2)
    cfg.log(f"validate: {rows:,} rows x {runs} runs, jsonschema on {sample:,} rows (child process, one core)")
    res = run_child([__file__, "--child", "--rows", str(rows), "--sample", str(sample), "--runs", str(runs)],
                    env=ONE_CORE_ENV).data

    eng_cpu = median(res["engine_cpu_rates"])
    eng_wall = median(res["engine_wall_rates"])
    js_cpu = median(res["jsonschema_cpu_rates"])
    js_wall = median(res["jsonschema_wall_rates"])
    fj_cpu = median(res["fastjsonschema_cpu_rates"])
    ratio = eng_cpu / js_cpu
    sec.row("events/s (prepare: Arrow -> bodies)", fmt_rate(eng_cpu, " ev/s"), "", "",
            f">= {TARGET_RATE:,} ev/s", verdict(eng_cpu >= TARGET_RATE), f"{runs} x {rows:,} rows", value=eng_cpu)
    sec.row("vs jsonschema per row", fmt_rate(eng_cpu, " ev/s"),
            f"jsonschema Draft 2020-12 iter_errors: {fmt_rate(js_cpu, ' rows/s')} "
            f"({1e6 / js_cpu:.1f} us/row)", fmt_ratio(ratio), f">= {TARGET_RATIO:g}x",
            verdict(ratio >= TARGET_RATIO), f"{runs} x {sample:,} rows", value=ratio)
    sec.row("vs fastjsonschema per row", fmt_rate(eng_cpu, " ev/s"),
            f"fastjsonschema compiled: {fmt_rate(fj_cpu, ' rows/s')} ({1e6 / fj_cpu:.1f} us/row)",
            fmt_ratio(eng_cpu / fj_cpu), "reference", "INFO", f"{runs} x {res['fast_sample']:,} rows",
            value=eng_cpu / fj_cpu)

    sec.notes += [
        f"Rates from the child's CPU time; wall clock medians: engine {fmt_rate(eng_wall, ' ev/s')}, jsonschema "
        f"{fmt_rate(js_wall, ' rows/s')} (ratio {fmt_ratio(eng_wall / js_wall)}). CPU time / wall time of the "
        f"engine runs: {median(res['engine_cpu_share']):.2f} (about 1.0 means one busy core and no waiting; "
        "lower means the shared machine took the core away).",
        f"Engine output: {res['requests']:,} requests of <= 100 items, {res['items']:,} valid items "
        f"({res['rows'] - res['items']:,} invalid rows left out), {res['body_bytes'] / res['items']:.0f} bytes/item.",
        f"Same verdicts on the {sample:,}-row subsample: the engine rejects {res['engine_invalid_sample']:,} rows, "
        f"jsonschema {res['jsonschema_invalid_sample']:,}, fastjsonschema {res['fast_invalid_sample']:,} "
        f"({fmt_pct(res['engine_invalid_sample'] / sample)}).",
        "The baselines validate items already built as API dicts (dates as ISO strings, parameters nested) "
        "outside the clock; the engine is timed from the Arrow table to encoded request bodies. jsonschema uses "
        "the engine's published schema with its format checker (`ProjectSpecs.validator`); fastjsonschema "
        "compiles the same schema as draft-07 (it has no 2020-12 mode; the keywords used are the same).",
    ]
    sec.details.append(
        "Per-run rates (CPU time):\n\n"
        f"- engine: {', '.join(fmt_rate(v) for v in res['engine_cpu_rates'])}\n"
        f"- jsonschema: {', '.join(fmt_rate(v) for v in res['jsonschema_cpu_rates'])}\n"
        f"- fastjsonschema: {', '.join(fmt_rate(v) for v in res['fastjsonschema_cpu_rates'])}\n\n"
        f"cProfile of one engine run ({rows:,} rows, top functions by own time):\n\n```\n{res['profile']}\n```"
    )
    return sec


# ---------------------------------------------------------------------------------------------
# the child process
# ---------------------------------------------------------------------------------------------
def _specs() -> Any:
    """The demo project's specs, read once from an in-process emulator (stopped before timing)."""
    from airflow_provider_instasent import InstasentClient
    from airflow_provider_instasent.emulator import Emulator
    from airflow_provider_instasent.ingest import ProjectSpecs

    with Emulator() as emu:
        base = emu.start()
        with InstasentClient(token="demo-admin-token", project="demo", base_url=base) as client:
            specs = ProjectSpecs.load(client, kind="events")
            specs.event_type(EVENT_TYPE)  # fetch and cache the parameter specs
            specs.client = None
    return specs


def _api_items(table: Any) -> list[dict[str, Any]]:
    """The rows as the API items a per-row validator would check (built outside the clock)."""
    items = []
    for row in table.to_pylist():
        params: dict[str, Any] = {"order_id": row["order_id"]}
        amount = row["amount"]
        if amount is not None and amount == amount:
            params["amount"] = amount
        if row["currency"] is not None:
            params["currency"] = row["currency"]
        if row["items"] is not None:
            params["items"] = row["items"]
        item: dict[str, Any] = {"_user_id": row["_user_id"], "_event_id": row["_event_id"],
                                "_event_type": EVENT_TYPE, "_event_parameters": params}
        if row["_event_date"] is not None:
            item["_event_date"] = row["_event_date"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        items.append(item)
    return items


def _timed(func: Any) -> tuple[float, float, Any]:
    gc.collect()
    w0, c0 = time.perf_counter(), time.process_time()
    out = func()
    return time.perf_counter() - w0, time.process_time() - c0, out


def child(rows: int, sample: int, runs: int) -> dict[str, Any]:
    import pyarrow as pa

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    import fastjsonschema
    from common import profile_call
    from data import orders_table

    from airflow_provider_instasent.ingest import prepare

    specs = _specs()
    table = orders_table(rows)

    def engine(data: Any = table) -> tuple[int, int, int]:
        n_req = n_items = n_bytes = 0
        for request in prepare(specs, "events", data, event_type=EVENT_TYPE):
            n_req += 1
            n_items += request.n_items
            n_bytes += len(request.body)
        return n_req, n_items, n_bytes

    engine()  # warm-up (imports, regex compilation)
    out: dict[str, Any] = {"rows": rows, "engine_cpu_rates": [], "engine_wall_rates": [], "engine_cpu_share": []}
    for _ in range(runs):
        wall, cpu, (n_req, n_items, n_bytes) = _timed(engine)
        out["engine_cpu_rates"].append(rows / cpu)
        out["engine_wall_rates"].append(rows / wall)
        out["engine_cpu_share"].append(cpu / wall)
    out.update(requests=n_req, items=n_items, body_bytes=n_bytes)
    out["profile"] = profile_call(engine, top=14)

    sub = table.slice(0, sample)
    out["engine_invalid_sample"] = sample - engine(sub)[1]
    items = _api_items(sub)
    schema = specs.json_schema("events", EVENT_TYPE)
    validator = specs.validator("events", EVENT_TYPE)

    def js() -> int:
        bad = 0
        for item in items:
            for _ in validator.iter_errors(item):
                bad += 1
                break
        return bad

    js()  # warm-up
    out["jsonschema_cpu_rates"], out["jsonschema_wall_rates"] = [], []
    for _ in range(runs):
        wall, cpu, bad = _timed(js)
        out["jsonschema_cpu_rates"].append(sample / cpu)
        out["jsonschema_wall_rates"].append(sample / wall)
    out["jsonschema_invalid_sample"] = bad

    draft7 = {k: v for k, v in schema.items() if k != "$schema"}
    fast = fastjsonschema.compile(draft7)
    fast_items = items if rows <= sample else _api_items(table.slice(0, min(rows, 100_000)))
    exc_type = fastjsonschema.JsonSchemaValueException

    def fj(batch: list[dict[str, Any]] = fast_items) -> int:
        bad = 0
        for item in batch:
            try:
                fast(item)
            except exc_type:
                bad += 1
        return bad

    fj()
    out["fastjsonschema_cpu_rates"] = []
    for _ in range(runs):
        wall, cpu, _bad = _timed(fj)
        out["fastjsonschema_cpu_rates"].append(len(fast_items) / cpu)
    out["fast_sample"] = len(fast_items)
    out["fast_invalid_sample"] = fj(items)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--child", action="store_true")
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--sample", type=int, default=20_000)
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    child_output(child(a.rows, a.sample, a.runs))
