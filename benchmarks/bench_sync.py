"""sync: stateful sync of 1,000,000 contacts: first run, unchanged re-run, 1% changed + 0.5% added + 0.5% removed.

For each emulator latency (0 ms and 50 ms per request), with a fresh DuckDB state file:

1. run 1: ``sync_contacts`` of the whole model (everything is ``added`` and sent);
2. run 2: the same model again: 0 write calls expected;
3. run 3: the model with 1% of the rows changed, 0.5% added and 0.5% removed
   (``on_removed="delete"``): exactly those rows sent, and the removed ones deleted;
4. the stateless baseline: ``write_contacts`` of run 3's model (what a job without state sends).

Then memory flatness: runs 1-3 at 0 ms for each model size (250,000 and 1,000,000 contacts by
default) with the state in a DuckDB file and in PostgreSQL (a scratch schema of ``PG_URL``,
skipped when it does not answer); the growth of the highest peak RSS from the smallest size to
the largest, against the stateless ``write_contacts`` of the same sizes.

Each run is a fresh child process (``python benchmarks/bench_sync.py --child ...``): its wall
time and its own peak RSS (``VmHWM``) are reported. The emulator runs in its own process.
``INSTASENT_BENCH_SYNC_ROWS`` overrides the model size of the latency runs,
``INSTASENT_BENCH_SYNC_SIZES`` (``250000,1000000``) the sizes of the flatness runs.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from common import (
    DATA_DIR,
    PG_URL,
    Config,
    EmulatorProcess,
    Section,
    child_output,
    current_rss,
    fmt_mb,
    fmt_pct,
    make_client,
    run_child,
    verdict,
)

NAME = "sync"
TITLE = "Stateful sync: 1M contacts, unchanged re-run, 1% changed + 0.5% added + 0.5% removed"
MAX_RSS = 400e6
#: "flat": the highest peak RSS of runs 1-3 grows less than this from the smallest model to the largest
MAX_GROWTH = 0.15


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


def _child(emu: EmulatorProcess, mode: str, path: Path, state: str, cfg: Config, label: str) -> dict[str, Any]:
    res = run_child([__file__, "--child", mode, "--url", emu.url, "--path", str(path), "--state", state])
    data = dict(res.data)
    data["peak_rss"] = res.peak_rss
    cfg.log(f"{label}: {data.get('requests')} write requests, {data['seconds']:.1f} s, peak {fmt_mb(res.peak_rss)}"
            + (f"; added {data['added']}, changed {data['changed']}, removed {data['removed']}, "
               f"unchanged {data['unchanged']}" if mode == "sync" else ""))
    return data


class _State:
    """A fresh state location for one series of runs: a DuckDB file, or a PostgreSQL scratch schema
    (``--state`` is then ``postgres:<schema>``)."""

    def __init__(self, kind: str, tag: str) -> None:
        self.kind = kind
        self.schema = f"bench_sync_{os.getpid()}_{tag}".replace("-", "_").replace(".", "_")
        self.path = DATA_DIR / f"sync-state-{tag}.duckdb"

    def __enter__(self) -> str:
        if self.kind == "duckdb":
            self._drop_file()
            return str(self.path)
        self._pg(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE; CREATE SCHEMA {self.schema}")
        return f"postgres:{self.schema}"

    def __exit__(self, *exc: object) -> None:
        if self.kind == "duckdb":
            self._drop_file()
        else:
            self._pg(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")

    def _drop_file(self) -> None:
        import shutil

        for p in (self.path, Path(f"{self.path}.wal")):
            p.unlink(missing_ok=True)
        shutil.rmtree(f"{self.path}.tmp", ignore_errors=True)

    @staticmethod
    def _pg(sql: str) -> None:
        import psycopg2

        conn = psycopg2.connect(PG_URL, connect_timeout=5)
        conn.autocommit = True
        try:
            conn.cursor().execute(sql)
        finally:
            conn.close()


def _pg_available() -> bool:
    try:
        _State._pg("SELECT 1")
        return True
    except Exception:
        return False


def _series(emu: EmulatorProcess, n: int, kind: str, cfg: Config, tag: str) -> dict[str, dict[str, Any]]:
    """Runs 1-3 of one model size on one fresh state."""
    base, changed = model_parquet(n, "base"), model_parquet(n, "changed")
    with _State(kind, tag) as state:
        return {
            "run1": _child(emu, "sync", base, state, cfg, f"{tag} run 1"),
            "run2": _child(emu, "sync", base, state, cfg, f"{tag} run 2"),
            "run3": _child(emu, "sync", changed, state, cfg, f"{tag} run 3"),
        }


def run(cfg: Config) -> Section:
    sec = Section(NAME, TITLE)
    n = int(os.environ.get("INSTASENT_BENCH_SYNC_ROWS") or (50_000 if cfg.quick else 1_000_000))
    changed = model_parquet(n, "changed")
    # every 100th row changed; every 200th (offset 1) removed: disjoint sets
    expect = (n // 200, n // 100, n // 200)  # added, changed, removed
    details = []
    series: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for latency in (0.0, 50.0):
        with EmulatorProcess(latency_ms=latency) as emu:
            runs = _series(emu, n, "duckdb", cfg, f"duckdb-{n}-{latency:g}ms")
            r1, r2, r3 = runs["run1"], runs["run2"], runs["run3"]
            stateless = _child(emu, "stateless", changed, "", cfg, f"{latency:g} ms stateless")
        if latency == 0.0:
            series[("duckdb", n)] = runs
            series[("stateless", n)] = {"stateless": stateless}
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
        details.append(f"{lat}: run 1 {r1['seconds']:.1f} s ({r1['requests']:,} calls), run 2 {r2['seconds']:.1f} s "
                       f"(0 calls expected: {r2['requests']}), run 3 {r3['seconds']:.1f} s (added {r3['added']:,}, "
                       f"changed {r3['changed']:,}, removed {r3['removed']:,}, {r3['requests']:,} calls), stateless "
                       f"{stateless['seconds']:.1f} s ({stateless['requests']:,} calls).")
    _flatness(sec, cfg, n, series)
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


def _flatness(sec: Section, cfg: Config, n: int, series: dict[tuple[str, int], dict[str, dict[str, Any]]]) -> None:
    """Peak RSS of runs 1-3 at each model size, DuckDB and PostgreSQL state: growth smallest -> largest."""
    env = os.environ.get("INSTASENT_BENCH_SYNC_SIZES")
    sizes = sorted({int(x) for x in env.split(",")} if env else ({12_500, n} if cfg.quick else {250_000, n}))
    kinds = ["duckdb"] + (["postgres"] if _pg_available() else [])
    if "postgres" not in kinds:
        sec.notes.append(f"PostgreSQL ({PG_URL}) did not answer: its memory rows are skipped.")
    with EmulatorProcess() as emu:
        for size in sizes:
            for kind in kinds:
                if (kind, size) not in series:
                    series[(kind, size)] = _series(emu, size, kind, cfg, f"{kind}-{size}-0ms")
            if ("stateless", size) not in series:
                series[("stateless", size)] = {"stateless": _child(
                    emu, "stateless", model_parquet(size, "changed"), "", cfg, f"stateless {size}")}
    small, large = sizes[0], sizes[-1]
    lines = []
    for kind in kinds:
        peaks = {size: {r: series[(kind, size)][r]["peak_rss"] for r in ("run1", "run2", "run3")} for size in sizes}
        base = {size: series[("stateless", size)]["stateless"]["peak_rss"] for size in sizes}
        hi_small, hi_large = max(peaks[small].values()), max(peaks[large].values())
        growth = hi_large / hi_small - 1
        sec.row(f"{kind} state: peak RSS of runs 1-3 at {large:,} contacts (highest)", fmt_mb(hi_large),
                f"stateless write_contacts: {fmt_mb(base[large])}", f"{hi_large / base[large]:.2f}x",
                f"<= {fmt_mb(MAX_RSS)}", verdict(hi_large <= MAX_RSS), "1 per run",
                value=hi_large)
        sec.row(f"{kind} state: peak RSS growth {small:,} -> {large:,} contacts", fmt_pct(growth),
                f"{fmt_mb(hi_small)} -> {fmt_mb(hi_large)}; stateless {fmt_mb(base[small])} -> {fmt_mb(base[large])}",
                f"{large / small:.0f}x rows", f"< {MAX_GROWTH:.0%}", verdict(growth < MAX_GROWTH), "1 per run",
                value=growth)
        for size in sizes:
            runs = series[(kind, size)]
            lines.append(f"{kind}, {size:,} contacts: " + ", ".join(
                f"run {i} {runs[f'run{i}']['seconds']:.1f} s / {fmt_mb(peaks[size][f'run{i}'])}"
                f" ({runs[f'run{i}']['requests']:,} calls)" for i in (1, 2, 3))
                + f"; stateless write_contacts {fmt_mb(base[size])}.")
    sec.notes += [
        "Memory flatness: runs 1-3 at 0 ms latency for each model size and state database; \"flat\" means the "
        f"highest peak RSS of the three runs grows less than {MAX_GROWTH:.0%} from {small:,} to {large:,} contacts. "
        "PostgreSQL's own memory (the server process) is not counted, only the sync's process.",
        *lines,
    ]


# ---------------------------------------------------------------------------------------------
# the child process
# ---------------------------------------------------------------------------------------------
def child(mode: str, url: str, path: str, state: str) -> dict[str, Any]:
    from airflow_provider_instasent.ingest import write_contacts
    from airflow_provider_instasent.sync import sync_contacts

    target: Any = state
    if state.startswith("postgres:"):
        import psycopg2

        target = psycopg2.connect(PG_URL, options=f"-c search_path={state.split(':', 1)[1]}")
    rss_imports = current_rss()
    with make_client(url, pool_size=16) as client:
        started = time.perf_counter()
        if mode == "sync":
            report = sync_contacts(client, path, sync_id="bench", state=target, on_removed="delete",
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
    p.add_argument("--state", default="")
    a = p.parse_args()
    import duckdb  # noqa: F401  (imported before the "after imports" RSS, as the work needs it)
    import psycopg2  # noqa: F401
    import pyarrow  # noqa: F401

    import airflow_provider_instasent.sync  # noqa: F401

    child_output(child(a.child, a.url, a.path, a.state))
