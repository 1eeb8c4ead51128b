"""The main job, end to end, on embedded defaults (``./dev demo``).

1. starts the Instasent emulator (a subprocess on a free loopback port);
2. generates a realistic sample: CRM contacts in a DuckDB warehouse table, shop contacts,
   orders and page views as Parquet, a historical backfill, with a sprinkle of bad rows;
3. runs the example DAGs with real Airflow (``airflow dags test``, SQLite metadata DB,
   AIRFLOW_HOME under ``.work/demo``): reverse ETL of the CRM table, the daily shop feed,
   a historical backfill guarded against automations, the nightly export of the unified
   audience and a segment into the DuckDB warehouse and to Parquet;
4. prints a summary and stops everything it started.

Options: ``--contacts N`` (CRM contacts; shop contacts are 3/4 of it), ``--events N``
(orders + page views), ``--keep`` (leave the emulator running at the end, printing its URL),
``--queue-delay-ms MS`` (the emulator queues writes made without ``?_sync`` and applies them MS
later, as the real API queues them; default ``$INSTASENT_DEMO_QUEUE_DELAY_MS`` or 0).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".work" / "demo"
DATA = WORK / "data"
WAREHOUSE = WORK / "warehouse.duckdb"
AIRFLOW_HOME = WORK / "airflow"

STEPS = [
    ("instasent_reverse_etl_contacts", "CRM warehouse table → contacts (datasource crm)"),
    ("instasent_daily_events", "shop contacts, orders, page views (datasource dsapi)"),
    ("instasent_backfill_events", "historical orders, automations refused"),
    ("instasent_nightly_export", "audience + segment → DuckDB and Parquet"),
    ("instasent_sms_notification", "one direct SMS"),
]
#: The stateful sync runs twice: over the CRM model, then over the model after a few changes.
SYNC_DAG = "instasent_sync_contacts"


def change_model() -> str:
    """A day in the life of the CRM model: some contacts change plan, some leave, some arrive."""
    import duckdb

    with duckdb.connect(str(WAREHOUSE)) as con:
        changed = con.execute("UPDATE crm_contacts SET plan = CASE WHEN plan = 'pro' THEN 'basic' ELSE 'pro' END "
                              "WHERE hash(customer_id) % 100 = 0").fetchone()[0]  # type: ignore[index]
        removed = con.execute("DELETE FROM crm_contacts WHERE customer_id IN (SELECT customer_id FROM crm_contacts "
                              "ORDER BY customer_id LIMIT 50 OFFSET 1000)").fetchone()[0]  # type: ignore[index]
        added = con.execute("INSERT INTO crm_contacts SELECT * REPLACE ('new-' || customer_id AS customer_id) "
                            "FROM crm_contacts ORDER BY customer_id LIMIT 60").fetchone()[0]  # type: ignore[index]
    return f"{changed} plans changed, {removed} contacts removed, {added} added"


def log(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def start_emulator(queue_delay_ms: float = 0.0) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_instasent.emulator", "--port", "0", "--seed", "7",
         "--queue-delay-ms", str(queue_delay_ms)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    assert proc.stdout is not None
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith("listening on "):
            return proc, line.split("listening on ", 1)[1].strip()
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("the emulator did not start")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def make_data(n_contacts: int, n_events: int) -> dict[str, int]:
    import duckdb
    import pyarrow.parquet as pq

    from airflow_provider_instasent import samples

    n_shop = n_contacts * 3 // 4
    files = samples.write_sample(DATA, n_crm=n_contacts, n_shop=n_shop, n_orders=n_events * 2 // 5,
                                 n_page_views=n_events * 3 // 5)
    shop_ids = pq.read_table(files.shop_contacts, columns=["_user_id"]).column(0).to_pylist()
    backfill = samples.orders(shop_ids, max(1000, n_events // 50), seed=99, recent_share=0.0)
    pq.write_table(backfill, DATA / "backfill_orders.parquet")
    crm = pq.read_table(files.crm_contacts).rename_columns(
        ["customer_id", "first_name", "last_name", "email", "phone", "plan", "loyalty_points", "birthday"])
    with duckdb.connect(str(WAREHOUSE)) as con:
        con.register("crm", crm)
        con.execute("CREATE OR REPLACE TABLE crm_contacts AS SELECT * FROM crm")
    return {**files.counts, "backfill_orders": backfill.num_rows}


def airflow_env(emulator_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags_examples"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "INSTASENT_EXAMPLES_DIR": str(DATA),
        "AIRFLOW_CONN_INSTASENT_DEFAULT": json.dumps({
            "conn_type": "instasent", "host": emulator_url, "password": "demo-admin-token",
            "extra": {"project": "demo", "datasource": "dsapi"}}),
        "AIRFLOW_CONN_INSTASENT_WAREHOUSE": json.dumps({"conn_type": "duckdb", "host": str(WAREHOUSE)}),
    })
    return env


def airflow(env: dict[str, str], *args: str, log_name: str) -> None:
    out = WORK / "logs" / f"{log_name}.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as fh:
        result = subprocess.run([str(Path(sys.executable).parent / "airflow"), *args], env=env, stdout=fh,
                                stderr=subprocess.STDOUT, timeout=1800)
    if result.returncode != 0:
        tail = out.read_text()[-4000:]
        raise SystemExit(f"`airflow {' '.join(args)}` failed (exit {result.returncode}); log: {out}\n{tail}")


def xcoms() -> dict[tuple[str, str], Any]:
    """Every task's return value (the reports), from the Airflow metadata DB."""
    con = sqlite3.connect(AIRFLOW_HOME / "airflow.db")
    try:
        rows = con.execute("SELECT dag_id, task_id, value FROM xcom WHERE key = 'return_value'").fetchall()
    finally:
        con.close()
    out: dict[tuple[str, str], Any] = {}
    for dag_id, task_id, value in rows:
        try:
            out[(dag_id, task_id)] = json.loads(value) if isinstance(value, (str, bytes)) else value
        except (TypeError, ValueError):
            out[(dag_id, task_id)] = value
    return out


def get_json(url: str) -> Any:
    import requests

    response = requests.get(url, timeout=30)
    response.raise_for_status()
    return response.json()


def _fmt(value: Any) -> str:
    """A value for the summary: thousands separators for counts, never cut mid-string."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}"
    return str(value)


def table(header: list[str], rows: list[list[Any]], *, left: int = 1) -> list[str]:
    """Aligned columns sized to their longest cell: the first ``left`` columns left-aligned, the
    others right-aligned, except the last, a free text column (never cut, never padded)."""
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    last = len(header) - 1

    def line(values: list[str]) -> str:
        out = [v if i == last else v.ljust(widths[i]) if i < left else v.rjust(widths[i])
               for i, v in enumerate(values)]
        return "  ".join(out).rstrip()

    return [line(header), *(line(r) for r in cells)]


def _target(value: dict[str, Any]) -> str:
    """Where an export went, in words (the operators' ``target`` XCom)."""
    target = value.get("target") or {}
    if "path" in target:
        path = Path(str(target["path"]))
        where = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        size = f", {target['bytes'] / 1e6:.1f} MB" if target.get("bytes") else ""
        return f"{where} ({target.get('row_groups')} row groups{size})"
    if "table" in target:
        return f"{target.get('dialect', 'SQL')} table {target['table']} (connection {target.get('conn_id')})"
    return ""


def _other(value: dict[str, Any]) -> str:
    """Any other task result as ``key=value`` pairs (scalars only, nothing cut)."""
    return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items() if not isinstance(v, (dict, list)))


def planted_rejects(limit_per_file: int = 2, limit: int = 6) -> tuple[int, list[list[Any]]]:
    """How many rejects the demo wrote, and the first few of each rejects file."""
    import pyarrow.parquet as pq

    total, shown = 0, []
    for path in sorted((DATA / "rejects").glob("*.parquet")):
        table_ = pq.read_table(path)
        total += table_.num_rows
        for row in table_.slice(0, limit_per_file).to_pylist():
            if len(shown) < limit:
                shown.append([path.name, row["source_row"], row["_user_id"] or "", row["field"] or "",
                              row["reason"]])
    return total, shown


def sync_section() -> None:
    """The two sync runs, from the state tables the sync keeps next to the model."""
    import duckdb

    if not WAREHOUSE.exists():
        return
    with duckdb.connect(str(WAREHOUSE), read_only=True) as con:
        try:
            runs = con.execute("SELECT run_id, status, rows_read, added, changed, removed, unchanged, held, requests, "
                               "accepted, rejected FROM instasent_sync_runs ORDER BY started_at").fetchall()
        except duckdb.Error:
            return
        last = runs[-1][0] if runs else None
        why = con.execute("SELECT row_key, operation, outcome, coalesce(reason, '') FROM instasent_sync_changelog "
                          "WHERE run_id = ? ORDER BY operation, row_key LIMIT 6", [last]).fetchall() if last else []
    if not runs:
        return
    print()
    rows = [[f"run {i + 1}", *r[1:]] for i, r in enumerate(runs)]
    print("\n".join(table(["sync crm_contacts", "status", "rows", "added", "changed", "removed", "unchanged",
                            "held", "write calls", "accepted", "rejected"], rows)))
    if len(runs) > 1:
        second = runs[-1]
        print(f"run 2 sent only what changed: {second[3] - second[7]} new and {second[4]} changed contacts and "
              f"{second[5]} deletes, of {_fmt(second[2])} rows, in {second[8]} write calls (re-sending the model: "
              f"about {_fmt(-(-second[2] // 100))}). The {second[7]} rows rejected in run 1 and unchanged since were "
              "held, not re-sent (they count in 'added'). Why, row by row (instasent_sync_changelog):")
        print("\n".join("  " + line for line in table(["_user_id", "operation", "outcome", "reason"],
                                                      [list(w) for w in why], left=4)))


def settle(emulator_url: str, timeout: float = 60.0) -> None:
    """Wait until the emulator's queue has applied every write (the summary reads what is stored)."""
    deadline = time.time() + timeout
    while get_json(f"{emulator_url}/_emulator/queue").get("pending") and time.time() < deadline:
        time.sleep(0.2)


def summary(emulator_url: str, counts: dict[str, int], wall: float, step_times: dict[str, float]) -> None:
    import duckdb

    results = xcoms()
    state = get_json(f"{emulator_url}/_emulator/state")
    automations = get_json(f"{emulator_url}/_emulator/automations")["events"]
    ingests, exports, others = [], [], []
    for (dag_id, task_id), value in sorted(results.items()):
        name = f"{dag_id}.{task_id}"
        if not isinstance(value, dict) or "added" in value:  # the sync has its own section
            continue
        if "accepted" in value:
            note = (f"dry run: {value.get('would_fire_automations')} would fire automations"
                    if value.get("dry_run") else "")
            if value.get("missing_contacts"):
                note = (note + "; " if note else "") + f"{value['missing_contacts']} events rejected for their contact"
            ingests.append([name, value["rows"], value["accepted"], value["rejected"], value["skipped"],
                            value["rows_per_s"], note])
        elif "target" in value:
            exports.append([name, value.get("rows"), value.get("rows_per_second"), _target(value)])
        elif "rows" in value or "sent" in value:
            others.append([name, _other(value)])

    print()
    print("=" * 100)
    print("Instasent demo: summary")
    print("=" * 100)
    print("sample: " + ", ".join(f"{_fmt(n)} {k.replace('_', ' ')}" for k, n in counts.items()))
    if ingests:
        print()
        print("\n".join(table(["ingest step", "rows", "accepted", "rejected", "skipped", "rows/s", "detail"],
                              ingests)))
    if exports:
        print()
        print("\n".join(table(["export step", "rows", "rows/s", "target"], exports)))
    if others:
        print()
        print("\n".join(table(["other step", "detail"], others)))
    print()
    print(f"emulator state: {_fmt(sum((state.get('contacts') or {}).values()))} datasource contacts "
          f"({', '.join(f'{k} {_fmt(v)}' for k, v in (state.get('contacts') or {}).items())}), "
          f"{_fmt(state.get('events'))} events stored; {len(automations)} events fired automations")
    total_contacts = sum((state.get("contacts") or {}).values())
    if total_contacts:
        merged = total_contacts - state.get("audience_contacts", 0)
        print(f"merging: {_fmt(total_contacts)} datasource contacts → {_fmt(state.get('audience_contacts'))} "
              f"audience contacts ({_fmt(merged)} merged by _user_id, email or phone)")
    sync_section()
    with duckdb.connect(str(WAREHOUSE), read_only=True) as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        sizes = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}  # type: ignore[index]
    print(f"warehouse: {WAREHOUSE.relative_to(ROOT)}: "
          + ", ".join(f"{t} ({_fmt(n)} rows)" for t, n in sizes.items()))
    exports_pq = sorted(str(p.relative_to(ROOT)) for p in (DATA / "export").glob("*.parquet"))
    print(f"parquet exports: {', '.join(exports_pq) or 'none'}")
    rejects = sorted(str(p.relative_to(ROOT)) for p in (DATA / "rejects").glob("*.parquet"))
    n_rejects, first = planted_rejects()
    print()
    if n_rejects:
        where = (DATA / "rejects").relative_to(ROOT)
        print(f"rejected rows: {_fmt(n_rejects)}, planted on purpose: the sample has a sprinkle of bad rows (invalid "
              "emails and dates,")
        print("missing required parameters, strings over maxLength, too many values). Each is rejected with its "
              "reason and kept")
        print(f"in {where}/ (one Parquet file per step, {len(rejects)} files); the valid rows still load. "
              "The first few:")
        print("\n".join("  " + line for line in table(["file", "row", "_user_id", "field", "reason"], first,
                                                     left=4)))
    else:
        print("rejected rows: none")
    print()
    print(f"time: {wall:.0f}s in all; per DAG: " + ", ".join(f"{k} {v:.0f}s" for k, v in step_times.items()))
    print()
    print("try:")
    print(f"  .venv/bin/python -c \"import duckdb; print(duckdb.connect('{WAREHOUSE.relative_to(ROOT)}', "
          "read_only=True).sql('SELECT plan, count(*) AS contacts, count(_email) AS with_email FROM "
          "instasent_audience GROUP BY plan ORDER BY contacts DESC'))\"")
    if rejects:
        print(f"  .venv/bin/python -c \"import pandas as pd; print(pd.read_parquet('{rejects[0]}').head(10)"
              ".to_string())\"")
    print("=" * 100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=250_000)
    parser.add_argument("--keep", action="store_true", help="leave the emulator running at the end")
    parser.add_argument("--queue-delay-ms", type=float,
                        default=float(os.environ.get("INSTASENT_DEMO_QUEUE_DELAY_MS") or 0),
                        help="queue the emulator's writes made without _sync for MS milliseconds (as the real API)")
    args = parser.parse_args()

    started = time.time()
    if WORK.exists():
        shutil.rmtree(WORK)
    DATA.mkdir(parents=True)
    log(f"generating sample data in {DATA.relative_to(ROOT)} ...")
    counts = make_data(args.contacts, args.events)
    log(f"sample: {counts}")
    emulator, url = start_emulator(args.queue_delay_ms)
    log(f"emulator listening on {url}" + (f" (writes without _sync queued {args.queue_delay_ms:g} ms)"
                                         if args.queue_delay_ms else ""))
    step_times: dict[str, float] = {}
    try:
        env = airflow_env(url)
        log("airflow db migrate ...")
        airflow(env, "db", "migrate", log_name="db-migrate")
        for dag_id, what in STEPS:
            log(f"airflow dags test {dag_id}  ({what})")
            t0 = time.time()
            airflow(env, "dags", "test", dag_id, log_name=dag_id)
            step_times[dag_id] = time.time() - t0
        t0 = time.time()
        log(f"airflow dags test {SYNC_DAG}  (stateful sync, run 1: the whole CRM model)")
        airflow(env, "dags", "test", SYNC_DAG, log_name="sync-1")
        log(f"changing the CRM model: {change_model()}")
        log(f"airflow dags test {SYNC_DAG}  (run 2: only what changed is sent)")
        airflow(env, "dags", "test", SYNC_DAG, log_name="sync-2")
        step_times[SYNC_DAG + " (2 runs)"] = time.time() - t0
        settle(url)
        summary(url, counts, time.time() - started, step_times)
    finally:
        if args.keep:
            log(f"emulator still running on {url} (pid {emulator.pid}); stop it with: kill {emulator.pid}")
        else:
            stop(emulator)
            log("emulator stopped; nothing left running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
