"""export: 200,000 audience contacts to PostgreSQL and to DuckDB, against the raw scroll.

The audience (CRM-like contacts from ``samples.crm_contacts``) is loaded into an emulator
(its own process, no latency, no rate limit) once, through the ingest engine. Then, each run,
with a fresh client each time and in this order:

* **raw fetch**: a loop that only follows the scroll (``client.scroll_audience_pages``,
  100 per page) and counts the entities: the ceiling for any exporter on this emulator;
* **PostgreSQL**: ``write_sql(export.batches(), hook, table, export.schema)`` (COPY into a
  staging table, then the swap), into ``PG_URL`` with a unique table name, dropped afterwards;
* **DuckDB**: the same into a DuckDB file under ``benchmarks/.data`` (Arrow ingestion).

The hooks handed to ``write_sql`` are minimal DB-API hooks (``conn_type`` and ``get_conn()``:
a psycopg2 / duckdb connection), so Airflow's import time is not counted; the load path is
the one the operators use. When a target is missed, a diagnosis follows: the fetch thread's
work alone (``Export(...).batches()`` without a sink), its cProfile, and each sink fed with
batches fetched beforehand (with their cProfile). Baselines, once per run of the benchmark (they are slow): fetch
everything into a list, build a pandas DataFrame, and ``DataFrame.to_sql`` through a
SQLAlchemy engine (PostgreSQL: psycopg2; DuckDB: ``duckdb_engine`` when installed, otherwise
DuckDB's own ``CREATE TABLE ... AS SELECT * FROM df`` on the registered DataFrame, noted).
"""

from __future__ import annotations

import contextlib
import functools
import time
import uuid
from collections.abc import Callable
from typing import Any

from common import (
    DATA_DIR,
    PG_URL,
    Config,
    Section,
    audience_emulator,
    fmt_int,
    fmt_pct,
    fmt_rate,
    fmt_ratio,
    make_client,
    median,
    profile_call,
    verdict,
)

NAME = "export"
TITLE = "Export of the audience to PostgreSQL and DuckDB vs the raw scroll"
TARGET_SHARE = 0.80
LATENCY_MS = 10


class PgHook:
    """What ``SqlWriter`` needs of a common-sql hook: the dialect and a DB-API connection."""

    conn_type = "postgres"

    def __init__(self, url: str) -> None:
        self.url = url

    def get_conn(self) -> Any:
        import psycopg2

        return psycopg2.connect(self.url)


class DuckHook:
    conn_type = "duckdb"

    def __init__(self, path: str) -> None:
        self.path = path

    def get_conn(self) -> Any:
        import duckdb

        return duckdb.connect(self.path)


def _single_thread_chunks(export: Any, schema: Any) -> Any:
    """The fetch thread's work (scroll + conversion) in the calling thread, for the profiler."""
    from airflow_provider_instasent.export.convert import BatchBuilder

    builder = BatchBuilder(schema, export.stats.invalid)
    raw = export._raw_source(builder)
    return export._decoded_chunks(builder) if raw is None else export._raw_chunks(export._counted(raw), builder)


def _pg_available() -> str | None:
    try:
        import psycopg2

        psycopg2.connect(PG_URL, connect_timeout=5).close()
        return None
    except Exception as exc:  # reported as SKIP
        return f"{type(exc).__name__}: {exc}".strip()


def _pg_drop(prefix: str) -> None:
    import psycopg2

    conn = psycopg2.connect(PG_URL)
    try:
        cur = conn.cursor()
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE %s",
                    (prefix + "%",))
        for (name,) in cur.fetchall():
            cur.execute(f'DROP TABLE IF EXISTS "{name}"')
        conn.commit()
    finally:
        conn.close()


def _pg_count(table: str) -> int:
    import psycopg2

    conn = psycopg2.connect(PG_URL)
    try:
        cur = conn.cursor()
        cur.execute(f'SELECT count(*) FROM "{table}"')
        return int(cur.fetchone()[0])
    finally:
        conn.close()


def _duck_count(path: str, table: str) -> int:
    import duckdb

    with duckdb.connect(path) as con:
        row = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        return int(row[0]) if row else 0


def _timed(func: Callable[[], int]) -> tuple[float, int]:
    t0 = time.perf_counter()
    rows = func()
    return time.perf_counter() - t0, rows


# --- the measured jobs --------------------------------------------------------------------------
def below(limit: int | None) -> dict[str, Any] | None:
    """The audience filter ``loyalty_points < limit`` (the first ``limit`` contacts loaded)."""
    if limit is None:
        return None
    return {"type": "attribute_condition", "key": "loyalty_points", "operator": "lt", "values": [limit]}


def raw_fetch(url: str, flt: dict[str, Any] | None = None) -> int:
    with make_client(url) as client:
        n = 0
        for page in client.scroll_audience_pages(flt, page_size=100):
            n += len(page.entities)
        return n


def fetch_convert(url: str) -> int:
    from airflow_provider_instasent.export import Export

    with make_client(url) as client:
        return sum(b.num_rows for b in Export(client, "audience", progress_interval=0).batches())


def to_sql(url: str, hook: Any, table: str, flt: dict[str, Any] | None = None, client: Any = None) -> int:
    """The export as the operators run it: ``write_sql(export.batches(), ...)``, with a fresh
    client unless ``client`` is given (then its ``stats`` count the requests)."""
    from airflow_provider_instasent.export import Export
    from airflow_provider_instasent.io.sql import write_sql

    with contextlib.nullcontext(client) if client is not None else make_client(url) as c:
        export = Export(c, "audience", filter=flt, progress_interval=0)
        return write_sql(export.batches(), hook, table, export.schema).rows


def pandas_frame(url: str) -> Any:
    """The naive way: every entity in a list, flattened into a DataFrame, lists as JSON text."""
    import json

    import pandas as pd

    with make_client(url) as client:
        entities: list[dict[str, Any]] = []
        for page in client.scroll_audience_pages(page_size=100):
            entities.extend(page.entities)
    df = pd.DataFrame([{"audience_id": e["id"], "created_at": e.get("createdAt"), "updated_at": e.get("updatedAt"),
                        **(e.get("attributesData") or {})} for e in entities])
    for col in df.columns:
        if df[col].dtype == object and df[col].map(lambda v: isinstance(v, list)).any():
            df[col] = df[col].map(lambda v: json.dumps(v) if isinstance(v, list) else v)
    return df


def pandas_pg(url: str, table: str) -> tuple[int, float]:
    import sqlalchemy

    t0 = time.perf_counter()
    df = pandas_frame(url)
    frame_s = time.perf_counter() - t0
    engine = sqlalchemy.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg2://", 1))
    try:
        df.to_sql(table, engine, index=False)
    finally:
        engine.dispose()
    return len(df), frame_s


def pandas_duck(url: str, path: str, table: str) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    df = pandas_frame(url)
    frame_s = time.perf_counter() - t0
    try:
        import duckdb_engine  # noqa: F401
        import sqlalchemy
    except ImportError:
        import duckdb

        with duckdb.connect(path) as con:
            con.register("df_view", df)
            con.execute(f'CREATE TABLE "{table}" AS SELECT * FROM df_view')
        return len(df), frame_s, "duckdb `CREATE TABLE AS SELECT * FROM df` (duckdb_engine is not installed)"
    engine = sqlalchemy.create_engine(f"duckdb:///{path}")
    try:
        df.to_sql(table, engine, index=False)
    finally:
        engine.dispose()
    return len(df), frame_s, "`DataFrame.to_sql` via duckdb_engine"


# --- the benchmark --------------------------------------------------------------------------------
def run(cfg: Config) -> Section:
    sec = Section(NAME, TITLE)
    n = 20_000 if cfg.quick else 200_000
    runs = cfg.n_runs(3, quick=1)
    emu, load = audience_emulator(n, cfg)
    url = emu.url
    total = load["audience"]
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    duck_path = str(DATA_DIR / "bench-export.duckdb")
    prefix = f"bench_exp_{uuid.uuid4().hex[:8]}"
    pg_skip = _pg_available()
    if pg_skip:
        cfg.log(f"PostgreSQL at {PG_URL} is not available: {pg_skip}")
    cfg.log(f"export: {total:,} contacts x {runs} runs (raw fetch, PostgreSQL, DuckDB), then baselines")

    def fresh_duck() -> None:
        for suffix in ("", ".wal"):
            with contextlib.suppress(FileNotFoundError):
                (DATA_DIR / f"bench-export.duckdb{suffix}").unlink()

    rates: dict[str, list[float]] = {"raw": [], "pg": [], "duck": []}
    cpu: dict[str, list[tuple[float, float, float]]] = {"raw": [], "pg": [], "duck": []}  # wall, client, emulator
    checks: list[str] = []

    def measure(key: str, func: Callable[[], int]) -> None:
        c0, e0 = time.process_time(), emu.cpu()
        secs, rows = _timed(func)
        rates[key].append(rows / secs)
        cpu[key].append((secs, time.process_time() - c0, emu.cpu() - e0))

    diagnosis: list[str] = []
    try:
        for i in range(runs):
            measure("raw", lambda: raw_fetch(url))
            if not pg_skip:
                table = f"{prefix}_{i}"
                measure("pg", functools.partial(to_sql, url, PgHook(PG_URL), table))
                checks.append(f"PostgreSQL {_pg_count(table):,}")
                _pg_drop(table)
            fresh_duck()
            measure("duck", lambda: to_sql(url, DuckHook(duck_path), "audience"))
            checks.append(f"DuckDB {_duck_count(duck_path, 'audience'):,}")
            cfg.log(f"run {i + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items() if v))

        # baselines: once (slow)
        base: dict[str, float] = {}
        frame_s: dict[str, float] = {}
        if not pg_skip:
            table = f"{prefix}_pandas"
            t0 = time.perf_counter()
            rows, frame_s["pg"] = pandas_pg(url, table)
            base["pg"] = rows / (time.perf_counter() - t0)
            checks.append(f"pandas PostgreSQL {_pg_count(table):,}")
            _pg_drop(table)
        fresh_duck()
        t0 = time.perf_counter()
        rows, frame_s["duck"], duck_how = pandas_duck(url, duck_path, "audience_pandas")
        base["duck"] = rows / (time.perf_counter() - t0)
        cfg.log("baselines: " + ", ".join(f"{k} {v:,.0f}/s" for k, v in base.items()))

        latency = _with_latency(emu, duck_path, prefix, pg_skip is None, total // 4, fresh_duck)
        cfg.log(f"with {LATENCY_MS} ms per page: " + ", ".join(f"{k} {v:,.0f}/s" for k, v in latency.items()
                                                              if k != "rows"))

        shares = {k: [s / r for s, r in zip(rates[k], rates["raw"])] for k in ("pg", "duck")}
        if any(median(shares[k]) < TARGET_SHARE for k in ("pg", "duck") if rates[k]):
            cfg.log("a target is missed: measuring the stages and profiling them")
            raw_cpu = tuple(median([c[j] for c in cpu["raw"]]) for j in range(3))
            sink_cpu = {k: tuple(median([c[j] for c in cpu[k]]) for j in range(3)) for k in ("pg", "duck") if cpu[k]}
            diagnosis = _diagnose(url, emu, duck_path, prefix, pg_skip is None, median(rates["raw"]), raw_cpu,
                                  sink_cpu, latency)
    finally:
        fresh_duck()
        if not pg_skip:
            _pg_drop(prefix)

    raw = median(rates["raw"])
    runs_txt = f"{runs} x {total:,} contacts"
    sec.row("raw page fetch (scroll loop)", fmt_rate(raw, " rows/s"), "", "", "reference", "INFO", runs_txt, value=raw)
    for key, label in (("pg", "PostgreSQL"), ("duck", "DuckDB")):
        if not rates[key]:
            sec.row(f"{label}: rate vs raw fetch", "skipped", "", "", f">= {TARGET_SHARE:.0%} of raw", "SKIP", "",)
            continue
        rate = median(rates[key])
        share = median(shares[key])
        sec.row(f"{label}: rate vs raw fetch", fmt_rate(rate, " rows/s"), f"raw fetch {fmt_rate(raw, ' rows/s')}",
                fmt_pct(share), f">= {TARGET_SHARE:.0%} of raw", verdict(share >= TARGET_SHARE), runs_txt,
                value=share)
        how = ("pandas `DataFrame.to_sql` (SQLAlchemy, psycopg2)" if key == "pg" else duck_how)
        sec.row(f"{label}: vs fetch-all + pandas", fmt_rate(rate, " rows/s"),
                f"{how}: {fmt_rate(base[key], ' rows/s')}", fmt_ratio(rate / base[key]), "report", "INFO",
                f"baseline 1 x {total:,}", value=rate / base[key])
    for key, label in (("pg", "PostgreSQL"), ("duck", "DuckDB")):
        if key in latency:
            sec.row(f"{label}, {LATENCY_MS} ms per page: rate vs raw", fmt_rate(latency[key], " rows/s"),
                    f"raw fetch {fmt_rate(latency['raw'], ' rows/s')}", fmt_pct(latency[key] / latency["raw"]),
                    "report", "INFO", f"1 x {latency['rows']:,} contacts", value=latency[key] / latency["raw"])
    sec.notes += [
        f"The rows 'with {LATENCY_MS} ms per page' repeat raw fetch, PostgreSQL and DuckDB on a quarter of the "
        f"audience ({latency.get('rows', 0):,} contacts, filter `loyalty_points < {total // 4:,}`) with the "
        f"emulator answering every request {LATENCY_MS} ms late (`POST /_emulator/faults`), closer to a real API "
        "where the scroll waits on the network: there the engine's conversion and loading overlap the wait. "
        "The targets are judged on the no-latency runs, the CPU-bound worst case.",
        f"Audience: {load['rows']:,} CRM-like contacts loaded once through `write_contacts` in {load['seconds']:.1f} s "
        f"({fmt_int(load['audience'])} audience contacts; {fmt_int(load['rejected'])} rows invalid on purpose). "
        f"Emulator: own process, no latency, no rate limit; its RSS with the audience: "
        f"{load['emulator_rss'] / 1e6:,.0f} MB. PostgreSQL: {PG_URL.split('@')[-1]}"
        + (f" (skipped: {pg_skip})" if pg_skip else "") + ".",
        "Per run (rows/s): " + "; ".join(
            f"{k}: " + ", ".join(fmt_int(v) for v in vals) for k, vals in rates.items() if vals) + ". "
        "Shares are the medians of the per-run ratios (each run measures raw fetch and the sinks back to back).",
        "CPU seconds per pass (median; wall / this process, all threads / emulator process): " + "; ".join(
            f"{k}: {median([c[0] for c in v]):.1f} / {median([c[1] for c in v]):.1f} / "
            f"{median([c[2] for c in v]):.1f}" for k, v in cpu.items() if v)
        + ". The PostgreSQL server's own CPU is not counted. Everything shares the same 2 cores.",
        "Rows checked in the targets after each load: " + ", ".join(dict.fromkeys(checks)) + ".",
        "Baselines include building the DataFrame (" + ", ".join(f"{k}: {v:.1f} s" for k, v in frame_s.items())
        + ") and keep timestamps as text and lists as JSON text (less typing work than the engine does); "
        "they hold the whole audience in memory.",
    ]
    sec.details += diagnosis
    return sec


def _with_latency(emu: Any, duck_path: str, prefix: str, with_pg: bool, limit: int,
                  fresh_duck: Callable[[], None]) -> dict[str, float]:
    """Raw fetch and the sinks on ``limit`` contacts with the emulator's latency on, once each."""
    flt = below(limit)
    out: dict[str, float] = {}
    emu.set_faults(latency_ms=LATENCY_MS)
    try:
        secs, rows = _timed(lambda: raw_fetch(emu.url, flt))
        out["raw"], out["rows"] = rows / secs, rows
        if with_pg:
            table = f"{prefix}_latency"
            secs, rows = _timed(lambda: to_sql(emu.url, PgHook(PG_URL), table, flt))
            out["pg"] = rows / secs
            _pg_drop(table)
        fresh_duck()
        secs, rows = _timed(lambda: to_sql(emu.url, DuckHook(duck_path), "audience_latency", flt))
        out["duck"] = rows / secs
    finally:
        emu.set_faults(latency_ms=0)
    return out


def _diagnose(url: str, emu: Any, duck_path: str, prefix: str, with_pg: bool, raw_rate: float,
              raw_cpu: tuple[float, ...], sink_cpu: dict[str, tuple[float, ...]], latency: dict[str, float]
              ) -> list[str]:
    """Where the time goes: the fetch thread's work alone (scroll + conversion, no sink), its
    profile (run in this thread), and each sink fed with batches fetched beforehand."""
    import duckdb

    from airflow_provider_instasent.export import Export
    from airflow_provider_instasent.io.sql import write_sql

    out = []
    c0, e0 = time.process_time(), emu.cpu()
    secs, rows = _timed(lambda: fetch_convert(url))
    conv = (secs, time.process_time() - c0, emu.cpu() - e0)
    w_r, c_r, e_r = raw_cpu
    lines = [
        "**Why the export misses the 80% target here (diagnosis, measured in this run).** Times for the whole "
        "audience, as wall / CPU of this process (all threads) / CPU of the emulator process:",
        "",
        f"- raw scroll loop: {w_r:.1f} s / {c_r:.1f} s / {e_r:.1f} s. The scroll is sequential (each page "
        "needs the previous page's cursor), so the client's and the emulator's work alternate: wall ≈ client "
        "CPU + emulator CPU. The client's part (`requests` per-request machinery + `orjson.loads`) is the larger.",
        f"- fetch + convert, no sink (`Export(...).batches()`): {conv[0]:.1f} s / {conv[1]:.1f} s / {conv[2]:.1f} s "
        f"= {rows / conv[0]:,.0f} rows/s, {fmt_pct(rows / conv[0] / raw_rate)} of the raw loop. The Arrow "
        f"conversion (+{conv[1] - c_r:.1f} s CPU) runs in the fetch thread, between one page and the next "
        "request, so it adds to the scroll's critical path instead of overlapping the emulator's time.",
    ]
    for key, label in (("pg", "PostgreSQL"), ("duck", "DuckDB")):
        if key in sink_cpu:
            w, c, e = sink_cpu[key]
            lines.append(f"- {label} export (median run): {w:.1f} s / {c:.1f} s / {e:.1f} s. The sink runs in the "
                         "consumer thread of the same process and competes with the fetch thread for the GIL (and, "
                         "with the emulator and the database server, for the 2 cores).")
    if latency:
        lines.append(f"- With {LATENCY_MS} ms of latency per page (the rows above), the fetch thread mostly waits on "
                     "the network, the conversion and the sink fit in that wait, and the export reaches "
                     + ", ".join(f"{fmt_pct(latency[k] / latency['raw'])} ({k})" for k in ("pg", "duck")
                                 if k in latency) + " of the raw loop.")
    lines += ["", "The sinks alone are much faster than the scroll (figures below), so the ceiling is the fetch "
              "thread: its CPU per page (client overhead + conversion) on a zero-latency server."]
    out.append("\n".join(lines))
    with make_client(url) as client:
        export = Export(client, "audience", progress_interval=0)
        schema = export.export_schema
        t0 = time.perf_counter()
        text = profile_call(lambda: sum(b.num_rows for b in _single_thread_chunks(export, schema)), top=18)
        out.append(f"Profile of the fetch thread's work (scroll + Arrow conversion, run in one thread, "
                   f"{time.perf_counter() - t0:.1f} s with the profiler on):\n\n```\n{text}\n```")
        batches = list(Export(client, "audience", progress_interval=0).batches())
    rows = sum(b.num_rows for b in batches)
    sinks: list[tuple[str, Any, str]] = [("DuckDB", DuckHook(duck_path), "audience_profile")]
    if with_pg:
        sinks.insert(0, ("PostgreSQL", PgHook(PG_URL), f"{prefix}_profile"))
    for label, hook, table in sinks:
        c0 = time.process_time()
        t0 = time.perf_counter()
        write_sql(iter(batches), hook, table, batches[0].schema)
        secs = time.perf_counter() - t0
        client_cpu = time.process_time() - c0
        text = profile_call(functools.partial(write_sql, iter(batches), hook, table + "_2", batches[0].schema), top=10)
        out.append(f"{label} sink alone, batches fetched beforehand: {rows:,} rows in {secs:.2f} s "
                   f"({rows / secs:,.0f} rows/s, {client_cpu:.2f} s CPU in this process). Profile:"
                   f"\n\n```\n{text}\n```")
        if label == "DuckDB":
            with duckdb.connect(duck_path) as con:
                con.execute(f'DROP TABLE IF EXISTS "{table}"; DROP TABLE IF EXISTS "{table}_2"')
    return out
