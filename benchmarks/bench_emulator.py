"""emulator: requests/s the emulator serves for 100-item event batches, by concurrency.

The emulator runs in its own process (no latency, no rate limit) with 1,000 seeded contacts;
``N`` threads of this process, each with one keep-alive ``http.client`` connection, post
100-item ``ecommerce_order_create`` batches (all new ``_event_id``s, so every event is
validated and stored) for a few seconds (``airflow_provider_instasent.emulator.bench``'s
loop). The emulator is reset before each level. Compare with the ingest_e2e ceiling (5,000
events/s): the emulator is not what limits the ingest benchmarks. The client threads share
this process' GIL, so at high concurrency the figure is a floor of what the emulator can do.
"""

from __future__ import annotations

from typing import Any

from common import Config, EmulatorProcess, Section, fmt_rate, fmt_ratio, median

NAME = "emulator"
TITLE = "Emulator capacity: 100-item event batches"
LEVELS = (1, 2, 4, 8)
E2E_CEILING = 3000 * 100 / 60.0  # bench_ingest_e2e's ceiling, events/s


def run(cfg: Config) -> Section:
    from airflow_provider_instasent.emulator.bench import EVENTS_PATH, _event_batch, run_clients, seed_contacts

    sec = Section(NAME, TITLE)
    seconds = 1.0 if cfg.quick else 2.0
    runs = cfg.n_runs(3, quick=1)
    levels = (1, 4) if cfg.quick else LEVELS
    users = 1000
    cfg.log(f"emulator: {len(levels)} concurrency levels x {runs} runs x {seconds:g} s")
    results: dict[int, list[dict[str, Any]]] = {}
    with EmulatorProcess() as emu:
        for clients in levels:
            results[clients] = []
            for _ in range(runs):
                emu.reset()
                seed_contacts(emu.url, users)
                results[clients].append(run_clients(
                    emu.url, clients, seconds,
                    lambda c, n: ("POST", EVENTS_PATH, _event_batch(c, n, 100, users))))
            errors = sum(r["errors"] for r in results[clients])
            rps = median([r["rps"] for r in results[clients]])
            p50 = median([r["p50_ms"] for r in results[clients]])
            p99 = median([r["p99_ms"] for r in results[clients]])
            cfg.log(f"{clients} clients: {rps:,.0f} requests/s")
            sec.row(f"POST 100 events, {clients} keep-alive client(s)", fmt_rate(rps, " req/s"),
                    f"= {fmt_rate(rps * 100, ' ev/s')}; p50 {p50:.1f} ms, p99 {p99:.1f} ms"
                    + (f"; {errors} errors" if errors else ""),
                    "", "report", "INFO" if not errors else "FAIL", f"{runs} x {seconds:g} s", value=rps)
    best = max(median([r["rps"] for r in rs]) for rs in results.values())
    sec.row("best level vs the ingest_e2e ceiling", fmt_rate(best * 100, " ev/s"),
            f"ingest_e2e ceiling {fmt_rate(E2E_CEILING, ' ev/s')}", fmt_ratio(best * 100 / E2E_CEILING),
            "> 1x (not the bottleneck)", "PASS" if best * 100 > E2E_CEILING else "MISS", "", value=best * 100)
    sec.notes += [
        "Each level's figure is the median over its runs; the client threads run in the harness process "
        "(one GIL), the emulator in its own process, both on the same 2 cores.",
        "In the memory benchmark the engine pushes to this emulator without latency or limit, so there the "
        "emulator (and the shared CPU) sets the pace; the memory figures do not depend on it.",
    ]
    return sec
