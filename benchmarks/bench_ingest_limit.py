"""ingest_limit: ingest at the concurrency limit (latency, no rate limit), emulator CPU recorded.

With a latency of L seconds per request and ``max_in_flight`` requests in flight, no client can
push more than ``max_in_flight x 100 / L`` items per second: that is the limit here (no rate
limit is set). The emulator runs in its own process with ``--latency-ms`` 50 and 100. Each
measured run is a fresh child process (a task's process) that times
``write_events(client, table, event_type="ecommerce_order_create", on_invalid="skip")`` (or
``write_contacts``) with the default options (``max_in_flight=16``), after the emulator was
reset and the 10,000 users the orders belong to were created. Per run it records the wall time,
the child's CPU time and the emulator process' CPU time over the same interval (so the
emulator's share of a core, and whether it was the bottleneck), the load average, the
requests sent and what the emulator stored.

Baselines in the same run against the same emulator: the engine of ``BASELINE_REF`` (the
commit before issue 19, extracted with ``git archive``; the same child, the same options), and a
naive sequential loop of ``requests.post`` with 100-item batches (latency-bound: it runs on a
subset and its rate is the same whatever the size).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    TOKEN,
    Config,
    EmulatorProcess,
    Section,
    child_output,
    fmt_pct,
    fmt_rate,
    fmt_ratio,
    make_client,
    median,
    run_child,
)

NAME = "ingest_limit"
TITLE = "Ingest at the concurrency limit (emulator in its own process, latency, no rate limit)"
TARGET = 0.85
IN_FLIGHT = 16
USERS = 10_000
EMULATOR_BOUND = 0.8  # of one core: the emulator serves under one GIL
EVENTS_PATH = "/v1/project/demo/datasource/dsapi/stream/events"
CONTACTS_PATH = "/v1/project/demo/datasource/dsapi/stream/contacts"


# -- the child: one measured run ---------------------------------------------------------------
def child_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--emulator-pid", type=int, required=True)
    p.add_argument("--kind", choices=("events", "contacts", "contacts_repeat"), required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--client-alone", action="store_true",
                   help="time only the pushes of bodies prepared before the clock (see _client_alone)")
    args = p.parse_args(argv)
    import psutil
    from data import audience_contacts, orders_table

    from airflow_provider_instasent.ingest import write_contacts, write_events

    emu = psutil.Process(args.emulator_pid)

    def emu_cpu() -> float:
        t = emu.cpu_times()
        return float(t.user + t.system)

    if args.kind == "events":
        table = orders_table(args.n, USERS)
    else:
        table = audience_contacts(args.n)
        if args.kind == "contacts_repeat":
            table = _with_repeats(table)
    load = os.getloadavg()[0]
    if args.client_alone:
        _client_alone(args, table, emu_cpu, load)
        return
    with make_client(args.url) as client:
        e0, c0, t0 = emu_cpu(), time.process_time(), time.perf_counter()
        if args.kind == "events":
            report = write_events(client, table, event_type="ecommerce_order_create", on_invalid="skip",
                                  progress_interval=0)
        else:
            report = write_contacts(client, table, on_invalid="skip", progress_interval=0)
        wall = time.perf_counter() - t0
        cpu, ecpu = time.process_time() - c0, emu_cpu() - e0
    child_output({"wall": wall, "cpu": cpu, "emu_cpu": ecpu, "load": load, "rows": report.rows,
                  "accepted": report.accepted, "requests": report.requests, "retries": report.retries,
                  "contact_check_calls": getattr(report, "contact_check_calls", 0),  # the baseline has no check
                  "statuses": {str(k): v for k, v in report.http_statuses.items()}})


def _client_alone(args: Any, table: Any, emu_cpu: Any, load: float) -> None:
    """The ceiling of this machine for the package's client: the same rows validated, encoded
    and chunked before the clock (``prepare``), then pushed by ``IN_FLIGHT`` threads through
    ``client.push``, each taking the next body as soon as its last one is answered. What the
    engine loses against this is its own work on the shared GIL (docs/performance.md)."""
    import threading

    from airflow_provider_instasent.ingest import prepare
    from airflow_provider_instasent.ingest.specs import ProjectSpecs

    kind = "events" if args.kind == "events" else "contacts"
    options = {"event_type": "ecommerce_order_create"} if kind == "events" else {}
    with make_client(args.url) as client:
        specs = ProjectSpecs.load(client, kind=kind, **options)
        requests = list(prepare(specs, kind, table, **options))
        reserve = getattr(client, "reserve_connections", None)
        if callable(reserve):
            reserve(IN_FLIGHT)
        queue = iter(requests)
        lock = threading.Lock()
        accepted = [0] * IN_FLIGHT

        def pusher(slot: int) -> None:
            while True:
                with lock:
                    request = next(queue, None)
                if request is None:
                    return
                result = client.push(kind, request.body, n_items=request.n_items)
                accepted[slot] += len(result.accepted)

        threads = [threading.Thread(target=pusher, args=(i,)) for i in range(IN_FLIGHT)]
        e0, c0, t0 = emu_cpu(), time.process_time(), time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - t0
        cpu, ecpu = time.process_time() - c0, emu_cpu() - e0
    child_output({"wall": wall, "cpu": cpu, "emu_cpu": ecpu, "load": load, "rows": table.num_rows,
                  "accepted": sum(accepted), "requests": len(requests), "retries": 0, "contact_check_calls": 0,
                  "statuses": {}})


def _with_repeats(table: Any) -> Any:
    """Every 10th row repeated 50 rows later with another plan: the later row must win."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    order: list[int] = []
    for i in range(n):
        order.append(i)
        if i >= 50 and (i - 50) % 10 == 0:
            order.append(i - 50)
    out = table.take(pa.array(order))
    repeat = pa.array([k >= 1 and order[k] < order[k - 1] for k in range(len(order))])
    plan = pc.if_else(repeat, pa.scalar("later"), out["plan"])
    return out.set_column(out.schema.get_field_index("plan"), "plan", plan)


# -- the harness --------------------------------------------------------------------------------
def _create_users(url: str) -> None:
    import pyarrow as pa
    from data import user_ids

    from airflow_provider_instasent.ingest import write_contacts

    with make_client(url) as client:
        report = write_contacts(client, pa.table({"_user_id": user_ids(USERS)}), progress_interval=0)
    if report.accepted != USERS:
        raise RuntimeError(f"creating the users failed: {report.summary()}")


def _engine_run(emu: EmulatorProcess, code: Path | None, kind: str, n: int, *,
                client_alone: bool = False) -> dict[str, Any]:
    emu.reset()
    if kind == "events":
        _create_users(emu.url)
    env = {"PYTHONPATH": str(code if code is not None else ROOT)}
    r = run_child([str(Path(__file__)), "--child", "--url", emu.url, "--emulator-pid", str(emu.proc.pid),
                   "--kind", kind, "--n", str(n)] + (["--client-alone"] if client_alone else []), env=env).data
    state = emu.state()
    r["stored"] = state["events"] if kind == "events" else state["contacts"].get("dsapi", 0)
    if kind == "contacts_repeat":
        r["later_won"] = _later_rows_won(emu)
    r["rate"] = r["accepted"] / r["wall"]
    return r


def _later_rows_won(emu: EmulatorProcess) -> bool:
    """Every repeated user of ``_with_repeats`` ended with plan "later" (spot check of 20)."""
    import requests

    for i in range(0, 200, 10):
        r = requests.get(f"{emu.url}/v1/project/demo/datasource/dsapi/stream/contacts/crm-{i}",
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        if r.status_code == 200 and r.json()["contact"]["contactData"].get("plan") != "later":
            return False
    return True


def event_items(n: int) -> list[dict[str, Any]]:
    """The ``n`` order events of ``orders_table(n, USERS)`` as the API's event items (what a
    naive loop posts: invalid rows included, NaN amounts left out)."""
    from data import orders_table

    items = []
    for row in orders_table(n, USERS).to_pylist():
        params = {k: row[k] for k in ("order_id", "amount", "currency", "items")
                  if row[k] is not None and row[k] == row[k]}
        items.append({"_user_id": row["_user_id"], "_event_id": row["_event_id"],
                      "_event_type": "ecommerce_order_create",
                      "_event_date": row["_event_date"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                      "_event_parameters": params})
    return items


def _naive_run(emu: EmulatorProcess, kind: str, n: int) -> dict[str, Any]:
    """Sequential ``requests.post`` of 100-item batches, no session (items built before the clock)."""
    import requests
    from data import audience_contacts

    emu.reset()
    if kind == "events":
        _create_users(emu.url)
        items = event_items(n)
        url = emu.url + EVENTS_PATH
    else:
        items = [{k: v for k, v in row.items() if v is not None} for row in audience_contacts(n).to_pylist()]
        url = emu.url + CONTACTS_PATH
    headers = {"Authorization": f"Bearer {TOKEN}"}
    t0 = time.perf_counter()
    for start in range(0, len(items), 100):
        requests.post(url, json=items[start:start + 100], headers=headers, timeout=60)
    wall = time.perf_counter() - t0
    return {"rate": len(items) / wall, "n": len(items), "wall": wall}


def _baseline_tree() -> Path | None:
    from bench_emulator_writes import _baseline_tree as tree

    return tree()


def run(cfg: Config) -> Section:
    from bench_emulator_writes import BASELINE_REF

    sec = Section(NAME, TITLE)
    runs = cfg.n_runs(3, quick=1)
    n = 20_000 if cfg.quick else 200_000
    naive_n = 1_000 if cfg.quick else 3_000
    cases = [("events", 50), ("events", 100), ("contacts", 50), ("contacts_repeat", 50)]
    base = _baseline_tree()
    details: list[str] = ["| case | code | run | rate | wall s | client CPU s | emulator CPU s (share of a core) "
                          "| load 1 min | requests | stored |", "|---|---|---|---|---|---|---|---|---|---|"]
    try:
        for kind, latency in cases:
            limit = IN_FLIGHT * 100 / (latency / 1000.0)
            with EmulatorProcess(latency_ms=latency) as emu:
                results: dict[str, list[dict[str, Any]]] = {"new": [], "base": [], "alone": []}
                for i in range(runs):  # alternate new, baseline and client alone: the same machine for all
                    for label, code in (("new", None), ("base", base), ("alone", None)):
                        if label != "new" and (kind == "contacts_repeat" or (label == "base" and code is None)):
                            continue
                        r = _engine_run(emu, code, kind, n if kind != "contacts_repeat" else n // 10,
                                        client_alone=label == "alone")
                        results[label].append(r)
                        share = r["emu_cpu"] / r["wall"]
                        cfg.log(f"{kind} {latency} ms ({label}) run {i + 1}: {r['rate']:,.0f}/s = "
                                f"{r['rate'] / limit:.1%} of {limit:,.0f}; emulator {share:.2f} core; load {r['load']:.1f}")
                        details.append(f"| {kind} {latency} ms | {label} | {i + 1} | {r['rate']:,.0f}/s "
                                       f"({r['rate'] / limit:.1%}) | {r['wall']:.2f} | {r['cpu']:.2f} | "
                                       f"{r['emu_cpu']:.2f} ({share:.2f}) | {r['load']:.1f} | {r['requests']:,} | "
                                       f"{r['stored']:,} |")
                naive = _naive_run(emu, "events" if kind == "events" else "contacts", naive_n)
            new = results["new"]
            rate = median([r["rate"] for r in new])
            share = rate / limit
            emu_share = median([r["emu_cpu"] / r["wall"] for r in new])
            client_share = median([r["cpu"] / r["wall"] for r in new])
            load = median([r["load"] for r in new])
            calls = median([(r["requests"] + r.get("contact_check_calls", 0)) / r["rows"] * 1000 for r in new])
            checks = median([r.get("contact_check_calls", 0) / r["rows"] * 1000 for r in new])
            lost = [r["accepted"] - r["stored"] for r in new] if kind == "events" else []
            bound = ("emulator-bound" if emu_share >= EMULATOR_BOUND else
                     f"machine busy (load {load:.1f} on 2 cores)" if load > 2.5 else "")
            label = {"events": "order events", "contacts": "contacts (later row wins)",
                     "contacts_repeat": "contacts, 10% repeated users"}[kind]
            status = "PASS" if share >= TARGET else "MISS"
            target = f">= {TARGET:.0%} of the limit"
            if kind == "contacts_repeat":
                status, target = ("INFO" if all(r.get("later_won") for r in new) else "FAIL"), "report"
            rows_n = n if kind != "contacts_repeat" else n // 10
            sec.row(f"{label}, {latency} ms: rate vs limit", fmt_rate(rate, "/s"),
                    f"limit {IN_FLIGHT} x 100 / {latency} ms = {fmt_rate(limit, '/s')}; emulator CPU "
                    f"{emu_share:.2f} core, client {client_share:.2f}; load {load:.1f}"
                    + (f"; {bound}" if bound else "") + (f"; lost {max(lost)}" if lost and max(lost) else ""),
                    fmt_pct(share), target, status, f"{runs} x {rows_n:,} rows", value=share)
            if results["base"]:
                brate = median([r["rate"] for r in results["base"]])
                bshare = median([r["emu_cpu"] / r["wall"] for r in results["base"]])
                sec.row(f"{label}, {latency} ms: vs the engine of {BASELINE_REF}", fmt_rate(rate, "/s"),
                        f"{BASELINE_REF}: {fmt_rate(brate, '/s')} ({fmt_pct(brate / limit)} of the limit; "
                        f"emulator CPU {bshare:.2f} core)", fmt_ratio(rate / brate), "report", "INFO",
                        f"{len(results['base'])} x {n:,} rows", value=rate / brate)
            if results["alone"]:
                arate = median([r["rate"] for r in results["alone"]])
                ashare = median([r["emu_cpu"] / r["wall"] for r in results["alone"]])
                sec.row(f"{label}, {latency} ms: vs the client alone (bodies prepared before the clock)",
                        fmt_rate(rate, "/s"),
                        f"{IN_FLIGHT} threads pushing prepared bodies: {fmt_rate(arate, '/s')} "
                        f"({fmt_pct(arate / limit)} of the limit; emulator CPU {ashare:.2f} core)",
                        fmt_pct(rate / arate), "report", "INFO", f"{len(results['alone'])} x {n:,} rows",
                        value=rate / arate)
            sec.row(f"{label}, {latency} ms: vs naive sequential requests.post", fmt_rate(rate, "/s"),
                    f"naive loop: {fmt_rate(naive['rate'], '/s')} (on {naive['n']:,} rows)",
                    fmt_ratio(rate / naive["rate"]), "report", "INFO", f"1 x {naive['n']:,} rows",
                    value=rate / naive["rate"])
            sec.row(f"{label}, {latency} ms: API calls per 1,000 rows", f"{calls:.1f}",
                    f"pushes + {checks:.1f} contact-check lookups; naive loop: 10.0", "", "report", "INFO",
                    f"{runs} x {rows_n:,} rows", value=calls)
    finally:
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)
    sec.notes += [
        f"Limit = max_in_flight x 100 items / latency, with the engine's default `max_in_flight={IN_FLIGHT}`; "
        "no rate limit, so nothing but the concurrency, the latency and CPU bounds a run.",
        "Each run is a fresh child process; the emulator's CPU is read from its process over the same interval. "
        f"A figure is marked emulator-bound when the emulator used >= {EMULATOR_BOUND:.0%} of a core (it "
        "serves under one GIL), and machine busy when the 1-minute load average exceeded 2.5 on these 2 cores.",
        f"The baseline engine is the code of commit `{BASELINE_REF}` run by the same child against the same "
        "emulator (this run's, with this run's emulator fixes), alternated run by run with the new code.",
        "`vs the client alone`: the same rows validated, encoded and chunked before the clock, then pushed by "
        f"{IN_FLIGHT} threads through the package's client: the ceiling of this machine for this client. The "
        "engine's gap to it is its own work (validation, encoding, the contact check) holding the GIL that "
        "the push threads need for every answer (docs/performance.md, fourth round).",
        "`contacts, 10% repeated users`: every 10th row is sent again 50 rows later with plan 'later'; the later "
        "row must win (checked on the emulator), so those requests wait for the earlier one's answer.",
    ]
    sec.details.append("\n".join(details))
    return sec


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        child_main(sys.argv[2:])
