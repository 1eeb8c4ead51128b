"""ingest_e2e: 200,000 events through the emulator with latency and a rate limit.

The emulator runs in its own process with ``--latency-ms 50 --rate-limit 3000`` (3,000 push
requests per minute, so the ceiling is 3,000 x 100 items / 60 s = 5,000 events/s and 200,000
events take at least 40 s). Each run resets the emulator, creates the 10,000 contacts the
orders belong to (events of unknown users are silently dropped by the API, so they could not
be counted), then times ``write_events(client, table, event_type="ecommerce_order_create",
on_invalid="skip")`` with a fresh client and the engine's default options (``max_in_flight``,
the client's connection pool; the values used are in the results). It checks:
throughput against the ceiling, the share of requests answered 429, and that the emulator
stored exactly the valid events (``/_emulator/state``).

Baseline, same emulator and settings: a naive sequential loop of ``requests.post`` with
100-item batches (items prepared before the clock starts, ``Retry-After`` honoured on 429). It
is latency-bound, so it runs on a subset and its rate is extrapolated to the full size.
"""

from __future__ import annotations

import time
from typing import Any

from common import (
    EVENT_TYPE,
    TOKEN,
    Config,
    EmulatorProcess,
    Section,
    fmt_int,
    fmt_pct,
    fmt_rate,
    fmt_ratio,
    make_client,
    median,
    verdict,
)

NAME = "ingest_e2e"
TITLE = "End-to-end ingest through the emulator (latency 50 ms, rate limit)"
LATENCY_MS = 50
RATE_LIMIT = 3000  # requests per minute
USERS = 10_000
TARGET_SHARE = 0.90
MAX_429 = 0.02
EVENTS_PATH = "/v1/project/demo/datasource/dsapi/stream/events"


def _create_contacts(client: Any, users: int) -> None:
    import pyarrow as pa
    from data import user_ids

    from airflow_provider_instasent.ingest import write_contacts

    report = write_contacts(client, pa.table({"_user_id": user_ids(users)}), progress_interval=0)
    if report.accepted != users:
        raise RuntimeError(f"creating the contacts failed: {report.summary()}")


def _engine_run(emu: EmulatorProcess, table: Any) -> dict[str, Any]:
    from airflow_provider_instasent.ingest import write_events

    emu.reset()
    with make_client(emu.url) as setup:
        _create_contacts(setup, USERS)
    time.sleep(1.5)  # let the emulator's token bucket refill after the contacts
    with make_client(emu.url) as client:
        c0, e0 = time.process_time(), emu.cpu()
        t0 = time.perf_counter()
        report = write_events(client, table, event_type=EVENT_TYPE, on_invalid="skip", progress_interval=0)
        wall = time.perf_counter() - t0
        cpu, emu_cpu = time.process_time() - c0, emu.cpu() - e0
        waited = client.rate_limiter.waited_s
    stored = emu.state()["events"]
    statuses = report.http_statuses
    responses = sum(statuses.values())
    return {
        "wall": wall,
        "cpu": cpu,
        "emu_share": emu_cpu / wall,
        "rows": report.rows,
        "sent": report.sent,
        "accepted": report.accepted,
        "rejected_local": report.rejected_local,
        "rejected_api": report.rejected_api,
        "requests": report.requests,
        "retries": report.retries,
        "statuses": statuses,
        "share_429": statuses.get(429, 0) / responses if responses else 0.0,
        "stored": stored,
        "rate": report.accepted / wall,
        "waited": waited,
    }


def _api_items(table: Any) -> list[dict[str, Any]]:
    """The rows as API items, unvalidated (what a hand-written loop would send)."""
    items = []
    for row in table.to_pylist():
        params = {k: row[k] for k in ("order_id", "amount", "currency", "items")
                  if row[k] is not None and row[k] == row[k]}
        items.append({
            "_user_id": row["_user_id"], "_event_id": row["_event_id"], "_event_type": EVENT_TYPE,
            "_event_date": row["_event_date"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "_event_parameters": params,
        })
    return items


def _naive_run(emu: EmulatorProcess, table: Any) -> dict[str, Any]:
    import requests

    emu.reset()
    with make_client(emu.url) as setup:
        _create_contacts(setup, USERS)
    time.sleep(1.5)
    items = _api_items(table)
    url = emu.url + EVENTS_PATH
    headers = {"Authorization": f"Bearer {TOKEN}"}
    statuses: dict[int, int] = {}
    t0 = time.perf_counter()
    for start in range(0, len(items), 100):
        while True:
            response = requests.post(url, json=items[start:start + 100], headers=headers, timeout=60)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code != 429:
                response.raise_for_status()
                break
            time.sleep(float(response.headers.get("Retry-After", "1")))
    wall = time.perf_counter() - t0
    return {"wall": wall, "events": len(items), "rate": len(items) / wall, "statuses": statuses,
            "stored": emu.state()["events"]}


def run(cfg: Config) -> Section:
    from data import orders_table

    sec = Section(NAME, TITLE)
    rows = 20_000 if cfg.quick else 200_000
    naive_rows = 3_000 if cfg.quick else 30_000
    runs = cfg.n_runs(3, quick=1)
    ceiling = RATE_LIMIT * 100 / 60.0
    table = orders_table(rows, USERS)
    cfg.log(f"ingest_e2e: {rows:,} events x {runs} runs at <= {ceiling:,.0f} events/s, then the naive loop "
            f"on {naive_rows:,}")
    results = []
    with EmulatorProcess(latency_ms=LATENCY_MS, rate_limit=RATE_LIMIT) as emu:
        for i in range(runs):
            results.append(_engine_run(emu, table))
            r = results[-1]
            cfg.log(f"run {i + 1}: {r['rate']:,.0f} events/s, {r['share_429']:.2%} 429, stored {r['stored']:,} "
                    f"of {r['accepted']:,}")
        naive = _naive_run(emu, table.slice(0, naive_rows))
        cfg.log(f"naive: {naive['rate']:,.0f} events/s")

    rate = median([r["rate"] for r in results])
    share = rate / ceiling
    share_429 = max(r["share_429"] for r in results)
    lost = [r["accepted"] - r["stored"] for r in results]
    valid = [r["rows"] - r["rejected_local"] - r["rejected_api"] for r in results]
    runs_txt = f"{runs} x {rows:,} events" + (" (long: fewer runs)" if runs < 5 and not cfg.quick else "")
    emu_share = median([r["emu_share"] for r in results])
    sec.row("throughput vs ceiling", fmt_rate(rate, " ev/s"),
            f"ceiling {fmt_rate(ceiling, ' ev/s')}; emulator CPU {emu_share:.2f} core"
            + ("; emulator-bound" if emu_share >= 0.8 else ""),
            fmt_pct(share), f">= {TARGET_SHARE:.0%} of ceiling", verdict(share >= TARGET_SHARE), runs_txt,
            value=rate)
    sec.row("requests answered 429 (worst run)", fmt_pct(share_429), "", "", f"<= {MAX_429:.0%}",
            verdict(share_429 <= MAX_429), runs_txt, value=share_429)
    sec.row("events lost (stored vs valid sent)", ", ".join(fmt_int(x) for x in lost),
            f"valid events per run: {fmt_int(valid[0])}", "", "0",
            verdict(all(x == 0 for x in lost) and all(r["accepted"] == v for r, v in zip(results, valid))),
            runs_txt, value=float(max(lost)))
    sec.row("vs naive sequential requests.post", fmt_rate(rate, " ev/s"),
            f"naive loop: {fmt_rate(naive['rate'], ' ev/s')} (on {naive_rows:,} events; "
            f"{rows / naive['rate']:,.0f} s projected for {rows:,})", fmt_ratio(rate / naive["rate"]),
            "report", "INFO", f"1 x {naive_rows:,} events", value=rate / naive["rate"])

    from airflow_provider_instasent.ingest import IngestOptions

    in_flight = IngestOptions.__dataclass_fields__["max_in_flight"].default
    with make_client("http://127.0.0.1:1") as probe:
        pool = probe.session.get_adapter("http://").poolmanager.connection_pool_kw.get("maxsize")
    sec.notes += [
        f"Engine options: defaults (`max_in_flight={in_flight}`, `batch_rows`="
        f"{IngestOptions.__dataclass_fields__['batch_rows'].default:,}), client connection pool {pool}.",
        f"Emulator: `--latency-ms {LATENCY_MS} --rate-limit {RATE_LIMIT}` in its own process; ceiling = "
        f"{RATE_LIMIT:,} requests/min x 100 items = {ceiling:,.0f} events/s. The client paces itself at 95% of "
        "the advertised limit (`RateLimiter(safety=0.95)`), so ~95% is the designed maximum; the emulator's "
        "token bucket starts full (one second's worth), which the first requests use.",
        f"The input has {rows:,} rows, 0.4% of them invalid on purpose (`on_invalid='skip'`): "
        f"{fmt_int(valid[0])} valid events per run, all stored each run (`/_emulator/state` events: "
        f"{', '.join(fmt_int(r['stored']) for r in results)}).",
        "Per run: " + "; ".join(
            f"{r['wall']:.1f} s, {fmt_rate(r['rate'], ' ev/s')}, {r['requests']:,} requests, HTTP "
            + ", ".join(f"{k}: {v:,}" for k, v in sorted(r["statuses"].items()))
            + f", {r['retries']} retries, client CPU {r['cpu']:.1f} s, pacing waits {r['waited']:.0f} s summed over the sender threads" for r in results
        ) + ".",
        f"The naive loop (`requests.post(url, json=batch)` per 100 items, no session, sequential) ran "
        f"{naive['events']:,} events in {naive['wall']:.1f} s (HTTP "
        + ", ".join(f"{k}: {v:,}" for k, v in sorted(naive["statuses"].items()))
        + "); it is bound by the 50 ms latency, one request at a time, not by the rate limit.",
    ]
    return sec
