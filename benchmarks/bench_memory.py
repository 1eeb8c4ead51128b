"""memory: peak RSS of a process ingesting 1M- and 4M-row Parquet files, and exporting a
small and a 4x larger audience to Parquet.

Each measured job runs alone in a fresh child process (``python benchmarks/bench_memory.py
--child ...``); its peak RSS is the child's own high-water mark (``VmHWM`` of
``/proc/self/status``, read when the work is done), so neither the harness nor the emulator
(another process) is counted; the parent also polls the child's RSS every 20 ms as a
cross-check. The figure includes the interpreter and its imports (pyarrow, numpy,
requests...): the child also reports its RSS after the imports, before any work.

* ingest: ``write_events(client, "orders.parquet", event_type="ecommerce_order_create",
  on_invalid="skip", check_contacts=False)`` with otherwise default options against the
  emulator with no latency and no rate limit: real HTTP sends. The events' users are not
  contacts of the emulator, so it validates and answers every item but does not store them
  (its own memory stays small). With the contact check on (the default) every event would be
  a reject before it is sent; the check's cost is measured by ``growth`` (whose users exist).
* export: ``Export(client, "audience", filter=...)`` streamed to ``write_parquet``; the small
  export is the same audience filtered to a quarter (``loyalty_points < N/4``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from common import (
    DATA_DIR,
    EVENT_TYPE,
    Config,
    EmulatorProcess,
    Section,
    audience_emulator,
    child_output,
    current_rss,
    fmt_int,
    fmt_mb,
    fmt_pct,
    make_client,
    run_child,
    verdict,
)

NAME = "memory"
TITLE = "Peak RSS: ingest 1M vs 4M rows, export N/4 vs N contacts"
MAX_RSS = 300e6
MAX_GROWTH = 0.10


polled: dict[str, int] = {}


def _ingest(emu: EmulatorProcess, path: Path, cfg: Config) -> tuple[int, dict[str, Any], float]:
    emu.reset()
    res = run_child([__file__, "--child", "ingest", "--url", emu.url, "--path", str(path)])
    polled[f"ingest {res.data['rows']:,}"] = res.polled_rss
    cfg.log(f"ingest {path.name}: peak {fmt_mb(res.peak_rss)}, {res.data['rows']:,} rows in "
            f"{res.data['seconds']:.1f} s")
    return res.peak_rss, res.data, res.seconds


def _export(url: str, limit: int | None, cfg: Config) -> tuple[int, dict[str, Any]]:
    out = DATA_DIR / "memory-export.parquet"
    args = [__file__, "--child", "export", "--url", url, "--path", str(out)]
    if limit is not None:
        args += ["--below", str(limit)]
    try:
        res = run_child(args)
    finally:
        out.unlink(missing_ok=True)
    polled[f"export {res.data['rows']:,}"] = res.polled_rss
    cfg.log(f"export {res.data['rows']:,} contacts: peak {fmt_mb(res.peak_rss)} in {res.data['seconds']:.1f} s")
    return res.peak_rss, res.data


def run(cfg: Config) -> Section:
    from data import orders_parquet

    sec = Section(NAME, TITLE)
    polled.clear()
    small, large = (50_000, 200_000) if cfg.quick else (1_000_000, 4_000_000)
    audience = 20_000 if cfg.quick else 200_000
    runs = cfg.n_runs(1, quick=1)
    cfg.log(f"memory: generating/reusing {small:,}- and {large:,}-row Parquet files in {DATA_DIR}")
    files = {n: orders_parquet(n) for n in (small, large)}
    peaks: dict[int, list[int]] = {small: [], large: []}
    info: dict[int, dict[str, Any]] = {}
    with EmulatorProcess() as emu:
        for _ in range(runs):
            for n in (small, large):
                peak, data, _secs = _ingest(emu, files[n], cfg)
                peaks[n].append(peak)
                info[n] = data
    p_small, p_large = min(peaks[small]), min(peaks[large])  # one run by default; min = least noise
    growth = (p_large - p_small) / p_small
    runs_txt = f"{runs} per size" + (" (long: one run)" if runs == 1 and not cfg.quick else "")
    for n in (small, large):
        p = min(peaks[n])
        sec.row(f"ingest {n:,}-row Parquet: peak RSS", fmt_mb(p), f"after imports: {fmt_mb(info[n]['rss_imports'])}",
                "", f"<= {fmt_mb(MAX_RSS)}", verdict(p <= MAX_RSS), runs_txt, value=p)
    sec.row(f"ingest growth {small:,} -> {large:,} rows", fmt_pct(growth), f"{fmt_mb(p_small)} -> {fmt_mb(p_large)}",
            f"{large // small}x rows", f"< {MAX_GROWTH:.0%}", verdict(growth < MAX_GROWTH), runs_txt, value=growth)

    emu_a, load = audience_emulator(audience, cfg)
    quarter = audience // 4
    e_small, d_small = _export(emu_a.url, quarter, cfg)
    e_large, d_large = _export(emu_a.url, None, cfg)
    e_growth = (e_large - e_small) / e_small
    sec.row(f"export {d_small['rows']:,} contacts to Parquet: peak RSS", fmt_mb(e_small),
            f"after imports: {fmt_mb(d_small['rss_imports'])}", "", f"<= {fmt_mb(MAX_RSS)}",
            verdict(e_small <= MAX_RSS), "1", value=e_small)
    sec.row(f"export {d_large['rows']:,} contacts to Parquet: peak RSS", fmt_mb(e_large),
            f"after imports: {fmt_mb(d_large['rss_imports'])}", "", f"<= {fmt_mb(MAX_RSS)}",
            verdict(e_large <= MAX_RSS), "1", value=e_large)
    sec.row(f"export growth {d_small['rows']:,} -> {d_large['rows']:,} contacts", fmt_pct(e_growth),
            f"{fmt_mb(e_small)} -> {fmt_mb(e_large)}", f"{d_large['rows'] / max(1, d_small['rows']):.1f}x rows",
            f"< {MAX_GROWTH:.0%}", verdict(e_growth < MAX_GROWTH), "1", value=e_growth)

    sec.notes += [
        "Peak RSS = the child process' own high-water mark (`VmHWM`, read by the child when its work is done), "
        "which includes the interpreter and its imports; 'after imports' is the child's RSS before it starts "
        "the work. `ru_maxrss` is not used: Linux carries the forking parent's (the harness') high-water mark "
        "into the child's rusage. Highest RSS seen by polling every 20 ms, as a cross-check: "
        + ", ".join(f"{k}: {fmt_mb(v)}" for k, v in polled.items()) + ". 1 MB = 10^6 bytes.",
        "Ingest runs: " + "; ".join(
            f"{n:,} rows: {info[n]['accepted']:,} accepted, {info[n]['rejected']:,} rejected locally, "
            f"{info[n]['requests']:,} requests in {info[n]['seconds']:.1f} s ({info[n]['rows'] / info[n]['seconds']:,.0f} "
            f"rows/s, emulator without latency or limit)" for n in (small, large)) + ".",
        f"Audience: {load['rows']:,} CRM-like contacts loaded once with `write_contacts` "
        f"({fmt_int(load['audience'])} audience contacts after {fmt_int(load['rejected'])} invalid rows, "
        f"{load['seconds']:.1f} s); exports: {d_small['rows']:,} rows in {d_small['seconds']:.1f} s and "
        f"{d_large['rows']:,} rows in {d_large['seconds']:.1f} s, default `batch_size=10_000` (one Parquet "
        "row group per batch).",
    ]
    return sec


# ---------------------------------------------------------------------------------------------
# the child process
# ---------------------------------------------------------------------------------------------
def child_ingest(url: str, path: str) -> dict[str, Any]:
    from airflow_provider_instasent.ingest import write_events

    rss_imports = current_rss()
    with make_client(url) as client:
        started = time.perf_counter()
        # check_contacts=False: the users are not contacts here (see the module doc); the
        # contact check's own cost is measured by `growth` and `no_event_lost`
        report = write_events(client, path, event_type=EVENT_TYPE, on_invalid="skip", progress_interval=0,
                              check_contacts=False)
        seconds = time.perf_counter() - started
    return {"rss_imports": rss_imports, "rows": report.rows, "accepted": report.accepted,
            "rejected": report.rejected, "requests": report.requests, "seconds": seconds}


def child_export(url: str, path: str, below: int | None) -> dict[str, Any]:
    from airflow_provider_instasent.export import Export
    from airflow_provider_instasent.io.parquet import write_parquet

    rss_imports = current_rss()
    flt = None
    if below is not None:
        flt = {"type": "attribute_condition", "key": "loyalty_points", "operator": "lt", "values": [below]}
    with make_client(url) as client:
        started = time.perf_counter()
        export = Export(client, "audience", filter=flt, progress_interval=0)
        result = write_parquet(export.batches(), path, export.schema)
        seconds = time.perf_counter() - started
    return {"rss_imports": rss_imports, "rows": result.rows, "seconds": seconds}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--child", choices=("ingest", "export"), required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--below", type=int, default=None)
    a = p.parse_args()
    import pyarrow  # noqa: F401  (imported before the "after imports" RSS, as the work needs it)
    import requests  # noqa: F401

    import airflow_provider_instasent.export
    import airflow_provider_instasent.ingest  # noqa: F401

    if a.child == "ingest":
        child_output(child_ingest(a.url, a.path))
    else:
        child_output(child_export(a.url, a.path, a.below))
