"""sync: stateful sync of 1,000,000 contacts: first run, unchanged re-run, 1% changed + 0.5% added + 0.5% removed.

For each emulator latency (0 ms and 50 ms per request), with a fresh DuckDB state file:

1. run 1: ``sync_contacts`` of the whole model (everything is ``added`` and sent);
2. run 2: the same model again: 0 write calls expected;
3. run 3: the model with 1% of the rows changed, 0.5% added and 0.5% removed
   (``on_removed="delete"``): exactly those rows sent, and the removed ones deleted;
4. the stateless baseline: ``write_contacts`` of run 3's model (what a job without state sends).

Each run is a fresh child process (``python benchmarks/bench_sync.py --child ...``): its wall
time and its own peak RSS (``VmHWM``) are reported. The emulator runs in its own process.
``INSTASENT_BENCH_SYNC_ROWS`` overrides the model size.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from common import (
    DATA_DIR,
    Config,
    EmulatorProcess,
    Section,
    child_output,
    current_rss,
    fmt_mb,
    make_client,
    run_child,
    verdict,
)

NAME = "sync"
TITLE = "Stateful sync: 1M contacts, unchanged re-run, 1% changed + 0.5% added + 0.5% removed"
MAX_RSS = 400e6


def model_parquet(n: int, variant: str) -> Path:
    """``base``: n contacts; ``changed``: 1% changed, 0.5% removed, 0.5% added (deterministic)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = DATA_DIR / f"sync-{variant}-{n}.parquet"
    if path.exists():
        return path
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    ids = np.arange(n)
    plans = np.array(["free", "pro", "gold"], dtype=object)[ids % 3]
    points = ids.astype(np.float64)
    if variant == "changed":
        keep = ids % 200 != 1  # 0.5% removed
        plans = plans.copy()
        plans[ids % 100 == 0] = "platinum"  # 1% changed
        added = np.arange(n, n + n // 200)  # 0.5% added
        ids = np.concatenate([ids[keep], added])
        plans = np.concatenate([plans[keep], np.array(["free"] * len(added), dtype=object)])
        points = np.concatenate([points[keep], added.astype(np.float64)])
    table = pa.table({
        "_user_id": pa.array([f"user-{i}" for i in ids.tolist()]),
        "plan": pa.array(plans.tolist(), pa.string()),
        "loyalty_points": pa.array(points),
    })
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, row_group_size=100_000)
    tmp.rename(path)
    return path


def _child(emu: EmulatorProcess, mode: str, path: Path, state: Path, cfg: Config, label: str) -> dict[str, Any]:
    res = run_child([__file__, "--child", mode, "--url", emu.url, "--path", str(path), "--state", str(state)])
    data = dict(res.data)
    data["peak_rss"] = res.peak_rss
    cfg.log(f"{label}: {data.get('requests')} write requests, {data['seconds']:.1f} s, peak {fmt_mb(res.peak_rss)}"
            + (f"; added {data['added']}, changed {data['changed']}, removed {data['removed']}, "
               f"unchanged {data['unchanged']}" if mode == "sync" else ""))
    return data


def run(cfg: Config) -> Section:
    sec = Section(NAME, TITLE)
    n = int(os.environ.get("INSTASENT_BENCH_SYNC_ROWS") or (50_000 if cfg.quick else 1_000_000))
    base, changed = model_parquet(n, "base"), model_parquet(n, "changed")
    # every 100th row changed; every 200th (offset 1) removed: disjoint sets
    expect = (n // 200, n // 100, n // 200)  # added, changed, removed
    details = []
    for latency in (0.0, 50.0):
        state = DATA_DIR / f"sync-state-{n}-{int(latency)}.duckdb"
        state.unlink(missing_ok=True)
        with EmulatorProcess(latency_ms=latency) as emu:
            r1 = _child(emu, "sync", base, state, cfg, f"{latency:g} ms run 1")
            r2 = _child(emu, "sync", base, state, cfg, f"{latency:g} ms run 2")
            r3 = _child(emu, "sync", changed, state, cfg, f"{latency:g} ms run 3")
            stateless = _child(emu, "stateless", changed, state, cfg, f"{latency:g} ms stateless")
        state.unlink(missing_ok=True)
        lat = f"{latency:g} ms"
        sec.row(f"{lat}: run 1 (all {n:,} added): wall time / peak RSS",
                f"{r1['seconds']:.1f} s / {fmt_mb(r1['peak_rss'])}",
                f"{r1['requests']:,} write requests", "", f"<= {fmt_mb(MAX_RSS)}",
                verdict(r1["peak_rss"] <= MAX_RSS and r1["accepted"] == n), "1", value=r1["seconds"])
        sec.row(f"{lat}: run 2 (unchanged): write calls", f"{r2['requests']}", f"{r2['seconds']:.1f} s, peak "
                f"{fmt_mb(r2['peak_rss'])}", "", "0", verdict(r2["requests"] == 0 and r2["unchanged"] == n), "1",
                value=r2["requests"])
        exact = (r3["added"], r3["changed"], r3["removed"]) == expect
        sent = r3["added"] + r3["changed"]
        sec.row(f"{lat}: run 3 (1% changed, 0.5% added, 0.5% removed): rows sent / deletes",
                f"{sent:,} / {r3['deleted']:,}", f"{r3['seconds']:.1f} s, peak {fmt_mb(r3['peak_rss'])}, "
                f"{r3['requests']:,} write calls", "", "exactly the changes", verdict(exact and r3["failed"] == 0), "1",
                value=r3["requests"])
        saved = stateless["requests"] - r3["requests"]
        sec.row(f"{lat}: run 3 vs stateless write_contacts: write calls saved",
                f"{saved:,} ({saved / max(1, stateless['requests']):.1%})",
                f"stateless: {stateless['requests']:,} calls in {stateless['seconds']:.1f} s, peak "
                f"{fmt_mb(stateless['peak_rss'])}", f"{stateless['seconds'] / max(r3['seconds'], 1e-9):.2f}x faster",
                "report", "INFO", "1", value=saved)
        details.append(f"* {lat}: run 1 {r1['seconds']:.1f} s ({r1['requests']:,} calls), run 2 {r2['seconds']:.1f} s "
                       f"(0 calls expected: {r2['requests']}), run 3 {r3['seconds']:.1f} s (added {r3['added']:,}, "
                       f"changed {r3['changed']:,}, removed {r3['removed']:,}, {r3['requests']:,} calls), stateless "
                       f"{stateless['seconds']:.1f} s ({stateless['requests']:,} calls).")
    sec.notes += [
        f"Model: {n:,} contacts (`_user_id`, `plan`, `loyalty_points`) in Parquet; run 3's model changes `plan` on "
        "every 100th row, drops every 200th (offset 1) and appends 0.5% new rows. State: a DuckDB file. "
        "`max_in_flight=16`, default `batch_rows`. Run 1 reads and hashes the model and then sends it all; "
        "runs 2 and 3 read and hash it and send only the diff.",
        "The emulator's latency is per request (`--latency-ms`), no rate limit. Peak RSS is the child's own "
        "`VmHWM` (interpreter and imports included). 1 MB = 10^6 bytes.",
        *details,
    ]
    return sec


# ---------------------------------------------------------------------------------------------
# the child process
# ---------------------------------------------------------------------------------------------
def child(mode: str, url: str, path: str, state: str) -> dict[str, Any]:
    from airflow_provider_instasent.ingest import write_contacts
    from airflow_provider_instasent.sync import sync_contacts

    rss_imports = current_rss()
    with make_client(url, pool_size=16) as client:
        started = time.perf_counter()
        if mode == "sync":
            report = sync_contacts(client, path, sync_id="bench", state=state, on_removed="delete",
                                   progress_interval=0, max_in_flight=16)
            out = report.to_dict()
            out.pop("ingest", None)
        else:
            ingest = write_contacts(client, path, progress_interval=0, max_in_flight=16)
            out = {"requests": ingest.requests, "accepted": ingest.accepted}
        out["seconds"] = time.perf_counter() - started
    out["rss_imports"] = rss_imports
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--child", choices=("sync", "stateless"), required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--state", required=True)
    a = p.parse_args()
    import duckdb  # noqa: F401  (imported before the "after imports" RSS, as the work needs it)
    import pyarrow  # noqa: F401

    import airflow_provider_instasent.sync  # noqa: F401

    child_output(child(a.child, a.url, a.path, a.state))
