"""peers: the package against what a user writes without it, in the same run, same emulator.

Every contender runs in a fresh child process (its peak RSS is that process' own ``VmHWM``)
against one emulator in its own process. The peers run with the Python of their own venv,
``.work/venv-bench-peers`` (``benchmarks/requirements-peers.txt``: dlt, duckdb, pandas, orjson,
requests, psutil, pyarrow; ``./dev bench`` builds it), with ``PYTHONPATH`` set to
``benchmarks/`` only: they cannot import ``airflow_provider_instasent`` (each child checks it did
not). Where that venv is missing (offline), the peer rows say so (INFO).

**Ingest**: order events (``orders_table``: 0.4% invalid rows on purpose) into an emulator
answering every request 50 ms late (no rate limit), after a reset and the creation of the
10,000 users the orders belong to:

* the package: ``write_events(client, table, event_type="ecommerce_order_create",
  on_invalid="skip")`` with its defaults (``max_in_flight=16``): the child of
  ``bench_ingest_limit``;
* **naive loop**: ``requests.post`` of 100-item batches, one after the other (latency-bound: run
  on a subset, its rate does not depend on the size);
* **dlt, defaults**: ``@dlt.destination(batch_size=100)`` whose function posts each batch to
  ``stream/events`` (``pipeline.run(items)``): one load file, so one load job, batches in sequence
  (latency-bound: a subset too);
* **dlt, parallel load jobs**: the same destination with ``loader_parallelism_strategy="parallel"``,
  ``LOAD__WORKERS=16`` (the package's 16 requests in flight) and
  ``DATA_WRITER__FILE_MAX_ITEMS=1000`` (a load file, hence a job, per 1,000 events: without
  more files there is nothing to run in parallel).

The peers get the events already as the API's items (built before the clock), the package
gets the Arrow table and converts it on the clock. dlt runs with
``PROVIDERS__ENABLE_AIRFLOW_SECRETS=false`` (otherwise it probes Airflow Variables) and its
telemetry off; the clock covers ``dlt.pipeline(...)`` and ``pipeline.run`` (extract, normalize,
load), not ``import dlt``.

**Export**: the audience of ``audience_emulator`` (the same one ``bench_export`` uses, no
latency), into a fresh DuckDB file:

* the package: ``write_sql(Export(client, "audience").batches(), duckdb hook, ...)``, as
  ``bench_export`` and the operators do;
* **raw page loop** (``requests`` + ``json``): a ``requests.Session`` posting the scroll and
  following ``metadata.cursor``, counting entities, storing nothing: the ceiling of any exporter;
* **raw page loop with orjson**: the same with ``orjson.loads``;
* **pages -> pandas -> DuckDB**: every entity in a list, flattened into a DataFrame (lists as
  JSON text), ``CREATE TABLE ... AS SELECT * FROM df``;
* **dlt rest_api -> DuckDB**: ``rest_api_source`` (bearer auth, ``POST audience/scroll``,
  ``data_selector: entities``, a ``cursor`` paginator reading ``metadata.cursor`` into the body)
  run into dlt's ``duckdb`` destination with its defaults (nested lists become child tables). It is
  slow, so it runs on a fortieth of the audience (the scroll filter ``loyalty_points < N/40``,
  sent in the body), against the package on that same fortieth.

API calls per 1,000 rows are counted by each contender (the package: its client's
``stats.requests``). Figures are medians over the runs; each run measures every contender
back to back.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from common import (
    DATA_DIR,
    ROOT,
    TOKEN,
    Config,
    EmulatorProcess,
    Section,
    audience_emulator,
    child_output,
    fmt_mb,
    fmt_pct,
    fmt_rate,
    fmt_ratio,
    median,
    run_child,
    verdict,
    vm_hwm,
)

NAME = "peers"
TITLE = "The package against its peers (naive loops, pandas, dlt), same run, same emulator"
PEERS_VENV = ROOT / ".work" / "venv-bench-peers"
PEERS_REQUIREMENTS = Path(__file__).resolve().parent / "requirements-peers.txt"
LATENCY_MS = 50
IN_FLIGHT = 16  # the package's default max_in_flight, given to dlt as LOAD__WORKERS
DLT_FILE_ITEMS = 1000
DLT_REST_SHARE = 40  # dlt's rest_api exports 1/40 of the audience (it is slow: ~1.4 ms CPU and ~0.1 MB per row)
EVENTS_PATH = "/v1/project/demo/datasource/dsapi/stream/events"
PROJECT_PATH = "/v1/project/demo/"
SCROLL_PATH = PROJECT_PATH + "audience/scroll"
PAGE = 100
PACKAGE = "airflow_provider_instasent"

#: dlt's environment: no Airflow secrets provider (it would probe hundreds of Airflow
#: Variables per run), no telemetry (no network but loopback), quiet logs.
DLT_ENV = {"PROVIDERS__ENABLE_AIRFLOW_SECRETS": "false", "RUNTIME__DLTHUB_TELEMETRY": "false",
           "RUNTIME__LOG_LEVEL": "ERROR"}


# =============================================================================================
# The peers: what a user writes without this package. Run with the peers venv's Python; they
# import nothing of airflow_provider_instasent (common.py's child_output only reports).
# =============================================================================================
def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def peer_naive_ingest(url: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """``requests.post`` of 100-item batches, one after the other, no session."""
    import requests

    calls = 0
    t0 = time.perf_counter()
    for start in range(0, len(items), PAGE):
        requests.post(url + EVENTS_PATH, json=items[start:start + PAGE], headers=_headers(),
                      timeout=60).raise_for_status()
        calls += 1
    return {"wall": time.perf_counter() - t0, "rows": len(items), "calls": calls}


def peer_dlt_ingest(url: str, items: list[dict[str, Any]], parallel: bool, workdir: str) -> dict[str, Any]:
    """``@dlt.destination(batch_size=100)`` posting each batch to ``stream/events``."""
    import dlt
    import requests

    calls = [0]
    lock = threading.Lock()
    extra: dict[str, Any] = {"loader_parallelism_strategy": "parallel"} if parallel else {}

    @dlt.destination(batch_size=PAGE, name="instasent_events", **extra)
    def instasent_events(batch: Any, table: Any) -> None:
        body = [{k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in item.items()} for item in batch]
        requests.post(url + EVENTS_PATH, json=body, headers=_headers(), timeout=60).raise_for_status()
        with lock:
            calls[0] += 1

    t0 = time.perf_counter()
    pipeline = dlt.pipeline(pipeline_name="peer_events", destination=instasent_events, pipelines_dir=workdir)
    pipeline.run(items, table_name="events")
    return {"wall": time.perf_counter() - t0, "rows": len(items), "calls": calls[0]}


def _scroll_pages(url: str, loads: Callable[[bytes], Any], root: dict[str, Any] | None,
                  counter: list[int]) -> Iterator[dict[str, Any]]:
    """The audience scroll, page by page: POST, read ``metadata.cursor``, POST it back."""
    import requests

    with requests.Session() as session:
        body: dict[str, Any] = {"limit": PAGE}
        if root is not None:
            body["root"] = root
        while True:
            response = session.post(url + SCROLL_PATH, json=body, headers=_headers(), timeout=120)
            response.raise_for_status()
            counter[0] += 1
            page = loads(response.content)
            yield page
            cursor = (page.get("metadata") or {}).get("cursor")
            if not cursor or not page.get("entities"):
                return
            body = {**body, "cursor": cursor}


def peer_raw(url: str, use_orjson: bool, root: dict[str, Any] | None) -> dict[str, Any]:
    """The scroll with ``requests`` and ``json`` (or ``orjson``), counting entities."""
    import orjson

    loads = orjson.loads if use_orjson else json.loads
    calls = [0]
    t0 = time.perf_counter()
    rows = sum(len(page["entities"]) for page in _scroll_pages(url, loads, root, calls))
    return {"wall": time.perf_counter() - t0, "rows": rows, "calls": calls[0], "stored": rows}


def peer_pandas_duckdb(url: str, db: str, root: dict[str, Any] | None) -> dict[str, Any]:
    """Every entity in a list, flattened into a DataFrame (lists as JSON text), into DuckDB."""
    import duckdb
    import pandas as pd

    calls = [0]
    t0 = time.perf_counter()
    entities: list[dict[str, Any]] = []
    for page in _scroll_pages(url, json.loads, root, calls):
        entities.extend(page["entities"])
    df = pd.DataFrame([{"audience_id": e["id"], "created_at": e.get("createdAt"), "updated_at": e.get("updatedAt"),
                        **(e.get("attributesData") or {})} for e in entities])
    for col in df.columns:
        if df[col].dtype == object and df[col].map(lambda v: isinstance(v, list)).any():
            df[col] = df[col].map(lambda v: json.dumps(v) if isinstance(v, list) else v)
    with duckdb.connect(db) as con:
        con.register("df_view", df)
        con.execute("CREATE TABLE audience AS SELECT * FROM df_view")
        wall = time.perf_counter() - t0
        stored = con.execute("SELECT count(*) FROM audience").fetchone()[0]
    return {"wall": wall, "rows": len(df), "calls": calls[0], "stored": stored}


def peer_dlt_rest_api(url: str, db: str, root: dict[str, Any] | None, workdir: str) -> dict[str, Any]:
    """dlt's ``rest_api`` source into its ``duckdb`` destination, defaults otherwise."""
    import dlt
    import duckdb
    from dlt.sources.rest_api import rest_api_source

    calls = [0]
    body: dict[str, Any] = {"limit": PAGE}
    if root is not None:
        body["root"] = root

    def count(response: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return response

    t0 = time.perf_counter()
    source = rest_api_source({
        "client": {"base_url": url + PROJECT_PATH, "auth": {"type": "bearer", "token": TOKEN}},
        "resources": [{
            "name": "audience",
            "endpoint": {
                "path": "audience/scroll",
                "method": "POST",
                "json": body,
                "data_selector": "entities",
                "paginator": {"type": "cursor", "cursor_path": "metadata.cursor", "cursor_body_path": "cursor"},
                "response_actions": [count],
            },
        }],
    })
    pipeline = dlt.pipeline(pipeline_name="peer_audience", destination=dlt.destinations.duckdb(db),
                            dataset_name="instasent", pipelines_dir=workdir)
    pipeline.run(source)
    wall = time.perf_counter() - t0
    with duckdb.connect(db) as con:
        stored = con.execute("SELECT count(*) FROM instasent.audience").fetchone()[0]
    return {"wall": wall, "rows": stored, "calls": calls[0], "stored": stored}


def peer_child(argv: list[str]) -> None:
    """``bench_peers.py --peer KIND ...``: one run of a peer (``raw``: both raw page loops, one
    after the other), its figures as the last line: ``{"results": {key: figures}}``."""
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=("naive", "dlt", "dlt_parallel", "raw", "pandas", "dlt_rest"))
    p.add_argument("--url", required=True)
    p.add_argument("--emulator-pid", type=int, required=True)
    p.add_argument("--items", default="")
    p.add_argument("--db", default="")
    p.add_argument("--below", type=int, default=0)
    args = p.parse_args(argv)
    import psutil

    _preload(args.kind)
    emu = psutil.Process(args.emulator_pid)
    root = _below(args.below)
    items = json.loads(Path(args.items).read_bytes()) if args.items else []
    jobs: dict[str, Callable[[str], dict[str, Any]]] = {
        "naive": lambda w: peer_naive_ingest(args.url, items),
        "dlt": lambda w: peer_dlt_ingest(args.url, items, False, w),
        "dlt_parallel": lambda w: peer_dlt_ingest(args.url, items, True, w),
        "raw_json": lambda w: peer_raw(args.url, False, root),
        "raw_orjson": lambda w: peer_raw(args.url, True, root),
        "pandas": lambda w: peer_pandas_duckdb(args.url, args.db, root),
        "dlt_rest": lambda w: peer_dlt_rest_api(args.url, args.db, root, w),
    }
    results = {}
    for key in ("raw_json", "raw_orjson") if args.kind == "raw" else (args.kind,):
        with tempfile.TemporaryDirectory(dir=os.environ.get("PEERS_WORKDIR")) as workdir:
            results[key] = _measured(emu, functools.partial(jobs[key], workdir))
    imported = any(m == PACKAGE or m.startswith(PACKAGE + ".") for m in sys.modules)
    child_output({"results": {k: {**r, "imported_package": imported} for k, r in results.items()}})


def _measured(emu: Any, job: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``job()``'s figures with this process' and the emulator's CPU over it and the peak RSS
    so far (``VmHWM``)."""
    e0, c0 = _cpu(emu), time.process_time()
    r = job()
    return {**r, "cpu": time.process_time() - c0, "emu_cpu": _cpu(emu) - e0, "vm_hwm": vm_hwm()}


def _preload(kind: str) -> None:
    """Import what the peer uses before its clock starts (the package's children do the same)."""
    import orjson  # noqa: F401
    import requests  # noqa: F401

    if kind in ("pandas", "dlt_rest"):
        import duckdb  # noqa: F401
        import pandas  # noqa: F401
    if kind.startswith("dlt"):
        import dlt  # noqa: F401
    if kind == "dlt_rest":
        from dlt.sources.rest_api import rest_api_source  # noqa: F401


def _below(limit: int) -> dict[str, Any] | None:
    """The audience filter ``loyalty_points < limit`` (as ``bench_export.below``), or None."""
    if not limit:
        return None
    return {"type": "attribute_condition", "key": "loyalty_points", "operator": "lt", "values": [limit]}


def _cpu(proc: Any) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


# =============================================================================================
# The package's export child (the package's venv)
# =============================================================================================
def package_export_child(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--emulator-pid", type=int, required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--below", type=int, required=True)
    args = p.parse_args(argv)
    import duckdb
    import psutil
    from bench_export import DuckHook, to_sql
    from common import make_client

    # imported before the clock, as the peers' modules are (the completeness check imports
    # pandas lazily: a task pays that once per process)
    from pandas.util import hash_array  # noqa: F401

    from airflow_provider_instasent.export import Export  # noqa: F401
    from airflow_provider_instasent.io.sql import write_sql  # noqa: F401

    emu = psutil.Process(args.emulator_pid)

    def export(table: str, below: int) -> dict[str, Any]:
        with make_client(args.url) as client:
            t0 = time.perf_counter()
            rows = to_sql(args.url, DuckHook(args.db), table, _below(below), client=client)
            wall = time.perf_counter() - t0
        with duckdb.connect(args.db) as con:
            stored = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        return {"wall": wall, "rows": rows, "calls": client.stats.requests, "stored": stored}

    # the small export first: the peak RSS read after it is its own
    results = {"package_subset": _measured(emu, lambda: export("audience_subset", args.below)),
               "package": _measured(emu, lambda: export("audience", 0))}
    child_output({"results": results})


# =============================================================================================
# The harness
# =============================================================================================
def peers_python() -> tuple[str | None, str]:
    """The peers venv's Python and a description, or None and why it cannot be used."""
    python = os.environ.get("INSTASENT_BENCH_PEERS_PYTHON") or str(PEERS_VENV / "bin" / "python")
    if not Path(python).exists():
        return None, (f"no peers venv at {python}: `./dev bench` builds it from "
                      "benchmarks/requirements-peers.txt (offline, or run without ./dev?)")
    probe = ("import importlib.metadata as m, importlib.util as u; import dlt, duckdb, orjson, pandas, psutil, requests;"
             f"print('dlt', dlt.__version__, 'duckdb', duckdb.__version__, 'pandas', pandas.__version__, "
             f"'orjson', m.version('orjson'), 'requests', requests.__version__); "
             f"print(u.find_spec({PACKAGE!r}) is not None)")
    try:
        out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "PYTHONPATH": ""}, cwd=tempfile.gettempdir())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"the peers venv's Python does not run: {exc}"
    if out.returncode != 0:
        return None, "the peers venv is incomplete: " + (out.stderr.strip().splitlines() or ["?"])[-1]
    versions, has_package = out.stdout.strip().splitlines()[-2:]
    if has_package == "True":
        return None, f"the peers venv ({python}) has {PACKAGE} installed: the peers must run without it"
    return python, versions


class Contenders:
    """Runs the children and keeps each contender's per-run figures."""

    def __init__(self, cfg: Config, emu: Any, python: str | None, workdir: Path) -> None:
        self.cfg = cfg
        self.emu = emu
        self.python = python
        self.workdir = workdir
        self.runs: dict[str, list[dict[str, Any]]] = {}
        self.errors: dict[str, str] = {}

    def peer(self, kind: str, label: str, **opts: Any) -> None:
        if self.python is None or kind in self.errors:
            return
        args = [str(Path(__file__)), "--peer", kind, "--url", self.emu.url, "--emulator-pid", str(self.emu.proc.pid)]
        for name, value in opts.items():
            args += [f"--{name}", str(value)]
        env = {"PYTHONPATH": "", "PEERS_WORKDIR": str(self.workdir), **DLT_ENV}
        if kind == "dlt_parallel":
            env.update(LOAD__WORKERS=str(IN_FLIGHT), DATA_WRITER__FILE_MAX_ITEMS=str(DLT_FILE_ITEMS))
        try:
            res = run_child(args, env=env, python=self.python, timeout=900)
        except RuntimeError as exc:
            self.errors[kind] = str(exc).strip().splitlines()[-1][:300]
            self.cfg.log(f"{label}: failed: {self.errors[kind]}")
            return
        self._keep(label, res)

    def package(self, label: str, args: list[str]) -> None:
        res = run_child(args, env={"PYTHONPATH": str(ROOT)}, timeout=900)
        self._keep(label, res)

    def _keep(self, label: str, res: Any) -> None:
        for key, r in res.data["results"].items():
            self.add(key, label, r, int(r.get("vm_hwm") or res.peak_rss))
        self.cfg.log(f"   (child: {res.seconds:.1f} s in all)")

    def add(self, key: str, label: str, r: dict[str, Any], peak: int) -> None:
        r = {**r, "peak": peak, "rate": r["rows"] / r["wall"]}
        self.runs.setdefault(key, []).append(r)
        self.cfg.log(f"{label} [{key}]: {r['rate']:,.0f} rows/s, {1000 * r['calls'] / max(r['rows'], 1):.1f} calls/1k "
                     f"rows, peak {fmt_mb(peak)}, emulator {r.get('emu_cpu', 0) / r['wall']:.2f} core")

    def med(self, key: str, field: str = "rate") -> float:
        return median([r[field] for r in self.runs.get(key, [])])

    def calls(self, key: str) -> float:
        return median([1000 * r["calls"] / max(r["rows"], 1) for r in self.runs.get(key, [])])

    def figure(self, key: str) -> str:
        """``rate · calls/1k rows · peak RSS`` of a contender (medians)."""
        return (f"{fmt_rate(self.med(key), ' rows/s')} · {self.calls(key):.1f} calls/1k rows · "
                f"{fmt_mb(self.med(key, 'peak'))} peak")

    def done(self, key: str) -> bool:
        return bool(self.runs.get(key))



def _ingest(sec: Section, cfg: Config, python: str | None, why: str, workdir: Path, runs: int) -> None:
    from bench_ingest_limit import _create_users, _engine_run, event_items

    n = 10_000 if cfg.quick else 100_000
    n_seq = 2_000 if cfg.quick else 10_000  # the latency-bound peers
    n_naive = 1_000 if cfg.quick else 5_000
    items_path = workdir / "events.json"
    subset_path = workdir / "events-seq.json"
    naive_path = workdir / "events-naive.json"
    items = event_items(n)
    for path, k in ((items_path, n), (subset_path, n_seq), (naive_path, n_naive)):
        path.write_bytes(json.dumps(items[:k]).encode())
    del items
    peers = [("naive", f"naive requests.post loop ({n_naive:,} events)", naive_path),
             ("dlt", f"dlt @dlt.destination, defaults ({n_seq:,} events)", subset_path),
             ("dlt_parallel", f"dlt @dlt.destination, parallel load jobs ({n:,} events)", items_path)]
    cfg.log(f"ingest: {n:,} order events at {LATENCY_MS} ms x {runs} runs: the package, "
            + ", ".join(p[0] for p in peers))
    with EmulatorProcess(latency_ms=LATENCY_MS) as emu:
        c = Contenders(cfg, emu, python, workdir)
        stored: dict[str, list[int]] = {}
        for i in range(runs):
            r = _engine_run(emu, None, "events", n)
            calls = r["requests"] + r.get("contact_check_calls", 0)  # pushes + the contact check's lookups
            c.add("package", f"run {i + 1}: package write_events", {**r, "calls": calls}, r.get("vm_hwm", 0))
            stored.setdefault("package", []).append(r["stored"])
            for key, label, path in peers:
                emu.reset()
                _create_users(emu.url)
                c.peer(key, f"run {i + 1}: {label}", items=path)
                if len(c.runs.get(key, ())) == i + 1:
                    stored.setdefault(key, []).append(emu.state()["events"])
    _report(sec, c, "ingest", f"order events, {LATENCY_MS} ms",
            [(key, label) for key, label, _ in peers], why, runs, n)
    sec.notes.append(
        f"Ingest: {n:,} order events per run into an emulator answering {LATENCY_MS} ms late (own process, no rate "
        f"limit); the package is `write_events` with `max_in_flight={IN_FLIGHT}` (child of `ingest_limit`), its calls the "
        "pushes plus the contact check's lookups (`check_contacts=True`, ADR 0013: the users were created by another "
        "process, so the check asks the API about each; the peers check nothing). The naive "
        "loop and dlt with its defaults send one request at a time, so their rate is the latency's whatever the size: "
        "they run on the subsets named in their rows. Events stored by the emulator after each run: "
        + "; ".join(f"{k}: {', '.join(f'{v:,}' for v in vals)}" for k, vals in stored.items())
        + " (invalid rows are rejected by the package before sending and by the emulator for the peers).")


def _export(sec: Section, cfg: Config, python: str | None, why: str, workdir: Path, runs: int) -> None:
    n = 20_000 if cfg.quick else 200_000
    emu, load = audience_emulator(n, cfg)
    total = load["audience"]
    subset = n // DLT_REST_SHARE
    db = workdir / "peers.duckdb"

    def fresh() -> Path:
        for suffix in ("", ".wal"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{db}{suffix}").unlink()
        return db

    pkg = [str(Path(__file__)), "--package-export", "--url", emu.url, "--emulator-pid", str(emu.proc.pid)]
    labels = {"raw_json": "raw page loop, requests + json", "raw_orjson": "raw page loop, requests + orjson",
              "pandas": "pages -> pandas -> DuckDB",
              "dlt_rest": f"dlt rest_api -> DuckDB (loyalty_points < {subset:,})"}
    peers = [("raw", "raw page loops", {}), ("pandas", labels["pandas"], {"db": db}),
             ("dlt_rest", labels["dlt_rest"], {"db": db, "below": subset})]
    cfg.log(f"export: {total:,} audience contacts x {runs} runs: the package, " + ", ".join(labels))
    c = Contenders(cfg, emu, python, workdir)
    for i in range(runs):
        c.package(f"run {i + 1}: package -> DuckDB", [*pkg, "--db", str(fresh()), "--below", str(subset)])
        for kind, label, opts in peers:
            if "db" in opts:
                fresh()
            c.peer(kind, f"run {i + 1}: {label}", **opts)
    fresh()
    _report(sec, c, "export", "audience -> DuckDB", list(labels.items()), why, runs, total)
    sec.notes.append(
        f"Export: {total:,} audience contacts (the `export` benchmark's emulator, no latency). dlt's rest_api runs on "
        f"1/{DLT_REST_SHARE} of them (`loyalty_points < {subset:,}`, in the scroll body), against the package on the "
        "same filter (`package_subset`, in the same child before the full export). Rows stored per run: " + "; ".join(
            k + ": " + ", ".join(f"{r.get('stored', 0):,}" for r in v) for k, v in c.runs.items()) + ".")


def _details(part: str, c: Contenders) -> str:
    """Every run of every contender: the figures behind the medians, CPU included (the
    machine is shared: CPU seconds are the steadier measure)."""
    lines = [f"{part.capitalize()}, every run:", "",
             "| contender | run | rows | wall s | rows/s | client CPU s | emulator CPU s | calls | peak RSS |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, rs in c.runs.items():
        for i, r in enumerate(rs, 1):
            lines.append(f"| {key} | {i} | {r['rows']:,} | {r['wall']:.2f} | {r['rate']:,.0f} | {r.get('cpu', 0):.2f} | "
                         f"{r.get('emu_cpu', 0):.2f} | {r['calls']:,} | {fmt_mb(r['peak'])} |")
    for key, err in c.errors.items():
        lines.append(f"| {key} | failed | {err.replace('|', '/')} | | | | | | |")
    return "\n".join(lines)


def _report(sec: Section, c: Contenders, part: str, what: str, peers: list[tuple[str, str]], why: str,
            runs: int, n: int) -> None:
    """Each peer as a ratio to the package, then the package against the best peer."""
    sec.details.append(_details(part, c))
    pkg_key = "package"
    pkg = c.med(pkg_key)
    pkg_text = f"{c.figure(pkg_key)}"
    sec.row(f"{part}: {what}: the package", pkg_text, "", "", "reference", "INFO", f"{len(c.runs[pkg_key])} x {n:,}",
            value=pkg)
    stores = {"raw_json": False, "raw_orjson": False}
    best: tuple[float, str, str] | None = None
    for key, label in peers:
        if not c.done(key):
            reason = c.errors.get("raw" if key.startswith("raw") else key) or why
            sec.row(f"{part}: the package vs {label}", "not measured", reason, "", "report", "INFO", "")
            continue
        base_key = "package_subset" if key == "dlt_rest" else pkg_key
        base = c.med(base_key)
        rate = c.med(key)
        peak_ratio = c.med(base_key, "peak") / max(c.med(key, "peak"), 1)
        on = " (on the same subset)" if base_key != pkg_key else ""
        sec.row(f"{part}: the package{on} vs {label}", c.figure(base_key), f"{label}: {c.figure(key)}",
                fmt_ratio(base / rate), "report", "INFO", f"{len(c.runs[key])} x {c.runs[key][0]['rows']:,}",
                value=base / rate)
        if part == "export":
            sec.rows[-1].baseline += f"; the package's peak RSS = {fmt_ratio(peak_ratio)} the peer's"
        if any(r.get("imported_package") for r in c.runs[key]):
            sec.rows[-1].status = "FAIL"
            sec.rows[-1].target = f"must not import {PACKAGE}"
        if stores.get(key, True):
            ratio = base / rate
            if best is None or ratio < best[0]:
                best = (ratio, f"{label}: {fmt_rate(rate, ' rows/s')}", fmt_rate(base, " rows/s"))
    if best is not None:
        ratio, peer_text, pkg_rate = best
        sec.row(f"{part}: the package vs the best peer", pkg_rate, f"best peer, {peer_text}", fmt_ratio(ratio),
                ">= the best peer", verdict(ratio >= 1.0), f"{runs} runs", value=ratio)
    else:
        sec.row(f"{part}: the package vs the best peer", "not measured", why, "", ">= the best peer", "INFO", "")
    if part == "export":
        from bench_export import TARGET_SHARE

        raws = [(c.med(k), label) for k, label in peers if k in stores and c.done(k)]
        if raws:
            raw, label = max(raws)
            shares = [p["rate"] / max(r["rate"] for r in rs)
                      for p, *rs in zip(c.runs[pkg_key], *[c.runs[k] for k in stores if c.done(k)])]
            share = median(shares)
            sec.row("export: the package vs the raw page loop", fmt_rate(pkg, " rows/s"),
                    f"fastest raw page loop ({label}): {fmt_rate(raw, ' rows/s')}", fmt_pct(share),
                    f">= {TARGET_SHARE:.0%} of raw", verdict(share >= TARGET_SHARE), f"{runs} runs", value=share)
        else:
            sec.row("export: the package vs the raw page loop", fmt_rate(pkg, " rows/s"), why, "",
                    f">= {TARGET_SHARE:.0%} of raw", "INFO", "")


def run(cfg: Config) -> Section:
    sec = Section(NAME, TITLE)
    runs = cfg.n_runs(3, quick=1)
    python, why = peers_python()
    cfg.log(f"peers venv: {python or 'not available'} ({why})")
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="peers-", dir=DATA_DIR))
    try:
        _ingest(sec, cfg, python, why, workdir, runs)
        _export(sec, cfg, python, why, workdir, runs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    sec.notes.insert(0, f"Peers venv: {python} ({why})." if python else f"Peers not measured: {why}.")
    sec.notes.append(
        "Ratios are the package's rate over the peer's (above 1: the package is faster); the 'best peer' is the one "
        "with the smallest ratio among those that store the data (the raw page loops store nothing: they are the "
        "ceiling, judged by the 80% target). Peak RSS is each child process' own VmHWM, interpreter and imports "
        "included.")
    return sec


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        peer_child(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--package-export":
        package_export_child(sys.argv[2:])
