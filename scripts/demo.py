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
(orders + page views), ``--keep`` (leave the emulator running at the end, printing its URL).
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


def log(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_instasent.emulator", "--port", "0", "--seed", "7"],
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


def summary(emulator_url: str, counts: dict[str, int], wall: float, step_times: dict[str, float]) -> None:
    import duckdb

    results = xcoms()
    state = get_json(f"{emulator_url}/_emulator/state")
    automations = get_json(f"{emulator_url}/_emulator/automations")["events"]
    print()
    print("=" * 100)
    print("Instasent demo: summary")
    print("=" * 100)
    print(f"sample: {counts}")
    print()
    print(f"{'step':<48} {'rows':>9} {'accepted':>9} {'rejected':>9} {'skipped':>8} {'rows/s':>9}")
    for (dag_id, task_id), value in sorted(results.items()):
        if isinstance(value, dict) and "accepted" in value:
            print(f"{dag_id + '.' + task_id:<48} {value['rows']:>9} {value['accepted']:>9} "
                  f"{value['rejected']:>9} {value['skipped']:>8} {value['rows_per_s']:>9.0f}"
                  + ("   (dry run: {} would fire automations)".format(value.get("would_fire_automations"))
                     if value.get("dry_run") else ""))
    for (dag_id, task_id), value in sorted(results.items()):
        if isinstance(value, dict) and "accepted" not in value and ("rows" in value or "sent" in value):
            print(f"{dag_id + '.' + task_id:<48} {json.dumps(value, default=str)[:200]}")
    print()
    print(f"emulator state: {state.get('contacts')} datasource contacts, {state.get('events')} events stored, "
          f"{state.get('audience_contacts')} merged audience contacts; {len(automations)} events fired automations")
    total_contacts = sum((state.get("contacts") or {}).values())
    if total_contacts:
        merged = total_contacts - state.get("audience_contacts", 0)
        print(f"merging: {total_contacts} datasource contacts → {state.get('audience_contacts')} audience contacts "
              f"({merged} merged by _user_id, email or phone)")
    with duckdb.connect(str(WAREHOUSE), read_only=True) as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        sizes = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}  # type: ignore[index]
    print(f"warehouse: {WAREHOUSE} tables {sizes}")
    rejects = sorted(str(p.relative_to(ROOT)) for p in (DATA / "rejects").glob("*.parquet"))
    print(f"rejects: {', '.join(rejects) or 'none'}")
    exports = sorted(str(p.relative_to(ROOT)) for p in (DATA / "export").glob("*.parquet"))
    print(f"parquet exports: {', '.join(exports) or 'none'}")
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
    args = parser.parse_args()

    started = time.time()
    if WORK.exists():
        shutil.rmtree(WORK)
    DATA.mkdir(parents=True)
    log(f"generating sample data in {DATA.relative_to(ROOT)} ...")
    counts = make_data(args.contacts, args.events)
    log(f"sample: {counts}")
    emulator, url = start_emulator()
    log(f"emulator listening on {url}")
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
