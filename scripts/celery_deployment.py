#!/usr/bin/env python
"""Boot a real Airflow 3 deployment on this machine and run the sharded backfill DAG on it.

What it starts (each in its own session, so it can be stopped as a whole):

* a fresh PostgreSQL metadata database ``airflow_scale_<pid>`` on 127.0.0.1:5432 (dropped at
  the end) that is also the Celery result backend;
* Redis on 127.0.0.1:6379 as the Celery broker: database ``--redis-db`` with a per-run key
  prefix, so concurrent runs never share a queue (the prefix's keys are deleted at the end);
* ``airflow scheduler`` (CeleryExecutor), ``airflow dag-processor``, ``airflow api-server``
  (on a free loopback port; the workers reach the execution API there) and ``--workers``
  Celery workers (``airflow celery worker -H worker-N``), each reporting ``worker-N`` as its
  task instances' ``hostname`` (``[core] hostname_callable``);
* the Instasent emulator (``python -m airflow_provider_instasent.emulator``).

Then it writes ``--events`` page-view events as Parquet (a few rows deliberately invalid),
seeds their contacts in the emulator, creates the ``instasent_api`` pool, unpauses and
triggers ``instasent_sharded_backfill`` (``--runs`` measured runs, each on a reset
emulator, then one re-trigger to prove idempotency), waits for each run, and checks:

* every run succeeded and every planned shard ran (``ingest_shard`` task instances);
* with two workers, shards ran on both (``task_instance.hostname`` in the metadata DB);
* the emulator holds every valid event exactly once, before and after the re-trigger, and
  the DAG's summary counts match (rows, accepted, rejected);
* after shutdown no process of any started session is left (checked with ``ps``).

It prints a summary (rows, wall time, rows/s, shards per worker) and writes it as JSON, and
exits 1 when a check fails (2 on a setup error). Logs go to ``.work/scale/<run>/`` (kept on
failure or with ``--keep-logs``).

Usage::

    .venv/bin/python scripts/celery_deployment.py --events 300000 --workers 2 --latency-ms 50
    .venv/bin/python scripts/celery_deployment.py --events 20000 --timeout 180   # CI size

Needs the ``celery`` extra (``apache-airflow-providers-celery``, ``redis``) and a PostgreSQL
that accepts ``postgres`` without a password from 127.0.0.1 (trust auth).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DAG_FILE = ROOT / "dags_examples" / "instasent_sharded_backfill.py"
DAG_ID = "instasent_sharded_backfill"
POOL = "instasent_api"
TOKEN = "demo-admin-token"
PROJECT = "demo"
DATASOURCE = "dsapi"
EVENT_TYPE = "page_view"
BAD_EVERY = 500  # one row in BAD_EVERY has no url (a required parameter): rejected by the API


class SetupError(RuntimeError):
    """The deployment could not be brought up (exit 2)."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5,
             alive: Callable[[], None] | None = None) -> Any:
    """Poll ``check`` until it returns a truthy value; ``alive`` raises if a component died."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # keep polling; report the last error on timeout
            last_exc = exc
        time.sleep(interval)
    raise SetupError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last_exc})"
                                                                                if last_exc else ""))


# ------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------


@dataclass
class Component:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_says(self, text: str) -> Callable[[], bool]:
        return lambda: text in self.log_path.read_text(errors="replace")

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class Processes:
    """Components started with ``start_new_session=True``: each is the leader of a session
    (and process group) whose id is its pid. Airflow's task runners move to process groups of
    their own but stay in the session, so sessions are what is tracked and stopped."""

    logs: Path
    components: list[Component] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Component:
        log_path = self.logs / f"{name}.log"
        with open(log_path, "ab") as out:
            popen = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=str(self.logs), start_new_session=True)
        comp = Component(name, popen, log_path)
        self.components.append(comp)
        log(f"started {name} (pid {popen.pid})")
        return comp

    def check_alive(self, names: set[str] | None = None) -> None:
        for comp in self.components:
            if (names is None or comp.name in names) and comp.popen.poll() is not None:
                raise SetupError(f"{comp.name} exited with code {comp.popen.returncode}:\n{comp.tail()}")

    @property
    def sessions(self) -> set[int]:
        return {c.pid for c in self.components}

    def members(self, sessions: set[int] | None = None) -> list[tuple[int, int, int, str, str]]:
        """``(pid, sid, pgid, stat, command)`` of every live process in our sessions (zombies excluded)."""
        out = subprocess.run(["ps", "-eo", "pid=,sid=,pgid=,stat=,args="], capture_output=True, text=True,
                             check=True)
        sessions = self.sessions if sessions is None else sessions
        found = []
        for line in out.stdout.splitlines():
            parts = line.split(None, 4)
            if len(parts) < 4:
                continue
            pid, sid, pgid, stat = int(parts[0]), int(parts[1]), int(parts[2]), parts[3]
            if sid in sessions and not stat.startswith("Z") and pid != os.getpid():
                found.append((pid, sid, pgid, stat, parts[4] if len(parts) > 4 else ""))
        return found

    def cpu_seconds(self) -> float:
        """CPU time used so far by this script, its CLI calls, and our sessions (live members plus
        the children they reaped)."""
        tick = os.sysconf("SC_CLK_TCK")
        me = os.times()
        total = round((me.user + me.system + me.children_user + me.children_system) * tick)
        for pid, *_ in self.members():
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
            except (OSError, IndexError, ValueError):
                continue
        return total / tick

    def running_tasks(self, names: set[str]) -> int:
        """Task-runner processes under the named components: Airflow's supervisor puts each
        task in a process group of its own, so they are the members whose pgid is not the sid."""
        sessions = {c.pid for c in self.components if c.name in names}
        return sum(1 for _, sid, pgid, _, _ in self.members(sessions) if pgid != sid)

    def _reap(self) -> None:
        for comp in self.components:
            comp.popen.poll()

    def stop(self, grace: float = 20.0) -> list[tuple[int, int, int, str, str]]:
        """SIGTERM each component's process group, then SIGKILL whatever is left of its session
        after ``grace`` seconds; returns the processes still alive afterwards (should be none)."""
        if not self.components:
            return []
        order = sorted(self.components, key=lambda c: {"scheduler": 0}.get(c.name, 1))
        for comp in order:
            if comp.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(comp.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            self._reap()
            if not self.members():
                break
            time.sleep(0.3)
        left = self.members()
        if left:
            log(f"SIGKILL to {len(left)} process(es) still running after {grace:.0f}s")
            for pid, *_ in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        for comp in self.components:
            with contextlib.suppress(subprocess.TimeoutExpired):
                comp.popen.wait(timeout=10)
        time.sleep(0.5)
        return self.members()


# ------------------------------------------------------------------------------------------
# PostgreSQL / Redis
# ------------------------------------------------------------------------------------------


class Postgres:
    """The server of ``admin_url`` (a libpq URL whose database is used to create/drop ``dbname``)."""

    def __init__(self, admin_url: str, dbname: str) -> None:
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(admin_url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise SetupError(f"--pg-url must be postgresql://user[:password]@host[:port]/db, got {admin_url!r}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 5432
        self.user = unquote(parts.username or "postgres")
        self.password = unquote(parts.password) if parts.password else None
        self.admin_db = parts.path.lstrip("/") or "postgres"
        self.dbname = dbname
        self.created = False

    def _connect(self, dbname: str) -> Any:
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                dbname=dbname, connect_timeout=5)

    def url(self, scheme: str) -> str:
        from urllib.parse import quote

        auth = quote(self.user, safe="") + (f":{quote(self.password, safe='')}" if self.password else "")
        return f"{scheme}://{auth}@{self.host}:{self.port}/{self.dbname}"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port} (user {self.user})"

    def create(self) -> None:
        conn = self._connect(self.admin_db)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{self.dbname}"')
            self.created = True
        finally:
            conn.close()

    def drop(self) -> None:
        if not self.created:
            return
        conn = self._connect(self.admin_db)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
            self.created = False
        finally:
            conn.close()

    def exists(self) -> bool:
        conn = self._connect(self.admin_db)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,))
                return cur.fetchone() is not None
        finally:
            conn.close()

    @property
    def sqlalchemy_url(self) -> str:
        return self.url("postgresql+psycopg2")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self._connect(self.dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        finally:
            conn.close()


def machine_cpu() -> tuple[float, float]:
    """``(busy, total)`` CPU seconds of the whole machine since boot (from /proc/stat)."""
    with open("/proc/stat") as fh:
        values = [int(x) for x in fh.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])
    return (total - idle) / tick, total / tick


def services_cpu(names: tuple[str, ...] = ("postgres", "redis-server")) -> float:
    """CPU seconds used so far by the PostgreSQL and Redis servers (they serve the deployment
    but are not its processes): live processes plus the children they reaped."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                raw = fh.read()
        except OSError:
            continue
        comm = raw[raw.find("(") + 1: raw.rfind(")")]
        if comm in names:
            fields = raw.rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])
    return total / tick


def redis_client(host: str, port: int, db: int) -> Any:
    import redis

    return redis.Redis(host=host, port=port, db=db, socket_timeout=5)


def redis_cleanup(host: str, port: int, db: int, prefix: str) -> int:
    r = redis_client(host, port, db)
    keys = list(r.scan_iter(match=f"{prefix}*", count=500))
    if keys:
        r.delete(*keys)
    return len(keys)


# ------------------------------------------------------------------------------------------
# Data and emulator
# ------------------------------------------------------------------------------------------


def write_events(directory: Path, n_events: int, n_contacts: int, n_files: int = 4,
                 row_group_size: int = 5_000) -> tuple[list[dict[str, Any]], int]:
    """Page views of ``n_contacts`` shop contacts as ``n_files`` Parquet files; returns the
    contacts (to seed) and the number of invalid rows (url missing)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from airflow_provider_instasent import samples

    contacts = samples.shop_contacts(n_contacts, n_contacts)
    views = samples.page_views(contacts.column("_user_id").to_pylist(), n_events)
    bad = pa.array(np.arange(n_events) % BAD_EVERY == 7)
    views = views.set_column(views.schema.get_field_index("url"), "url",
                             pc.if_else(bad, pa.scalar(None, pa.string()), views.column("url")))
    directory.mkdir(parents=True, exist_ok=True)
    per_file = math.ceil(n_events / n_files)
    for i in range(n_files):
        part = views.slice(i * per_file, per_file)
        if part.num_rows:
            pq.write_table(part, directory / f"part-{i:03d}.parquet", row_group_size=row_group_size)
    rows = [{k: v for k, v in r.items() if v is not None} for r in contacts.to_pylist()]
    return rows, int(pc.sum(bad).as_py() or 0)


class Emulator:
    def __init__(self, url: str) -> None:
        self.url = url

    def _session(self) -> Any:
        import requests

        return requests

    def state(self) -> dict[str, Any]:
        r = self._session().get(f"{self.url}/_emulator/state", timeout=30)
        r.raise_for_status()
        return dict(r.json())

    def settings(self, **changes: Any) -> None:
        r = self._session().post(f"{self.url}/_emulator/faults", json=changes, timeout=30)
        r.raise_for_status()

    def reset(self) -> None:
        self._session().post(f"{self.url}/_emulator/reset", timeout=30).raise_for_status()

    def seed_contacts(self, contacts: list[dict[str, Any]], latency_ms: float) -> None:
        """Reset to the fixture and load the contacts, with the latency off meanwhile."""
        from airflow_provider_instasent import InstasentClient

        self.settings(latency_ms=0)
        self.reset()
        with InstasentClient(token=TOKEN, project=PROJECT, datasource=DATASOURCE, base_url=self.url) as client:
            for i in range(0, len(contacts), 100):
                result = client.push_contacts(contacts[i:i + 100])
                if result.errors:
                    raise SetupError(f"seeding contacts: {result.errors[:3]}")
        self.settings(latency_ms=latency_ms)


# ------------------------------------------------------------------------------------------
# The deployment
# ------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    run_id: str
    state: str
    seconds: float
    start: float | None
    end: float | None
    shards: int
    shard_states: dict[str, int]
    hosts: dict[str, int]
    tries: int
    summary: dict[str, Any] | None
    emulator_events: int
    shard_seconds: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    ingest_window: float | None = None

    @property
    def wall(self) -> float:
        if self.start is not None and self.end is not None:
            return self.end - self.start
        return self.seconds


class Deployment:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tag = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        self.run_dir = (Path(args.work_dir) / self.tag).resolve()
        self.logs = self.run_dir / "logs"
        self.home = self.run_dir / "airflow-home"
        self.dags = self.run_dir / "dags"
        self.data = self.run_dir / "data" / "events"
        self.pylib = self.run_dir / "pylib"
        for d in (self.logs, self.home, self.dags, self.data.parent, self.pylib):
            d.mkdir(parents=True, exist_ok=True)
        self.procs = Processes(self.logs)
        self.pg = Postgres(args.pg_url, f"airflow_scale_{os.getpid()}")
        self.redis_prefix = f"instasent_scale_{os.getpid()}_{secrets.token_hex(3)}:"
        self.api_port = free_port()
        self.emulator: Emulator | None = None
        self.workers = [f"worker-{i + 1}" for i in range(args.workers)]
        self.airflow = str(Path(sys.executable).parent / "airflow")
        self.checks: list[tuple[str, bool, str]] = []
        self.timings: dict[str, float] = {}
        self.jwt_secret = secrets.token_urlsafe(64)
        self.contacts: list[dict[str, Any]] = []
        self.n_bad = 0

    # -- environment --------------------------------------------------------------------------
    def env(self, worker: str | None = None) -> dict[str, str]:
        assert self.emulator is not None
        a = self.args
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        conn = {"conn_type": "instasent", "host": self.emulator.url, "password": TOKEN,
                "extra": {"project": PROJECT, "datasource": DATASOURCE, "max_retries": 8}}
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": "32",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "32",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
            "AIRFLOW__API__SECRET_KEY": self.jwt_secret,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.pg.sqlalchemy_url,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://{a.redis_host}:{a.redis_port}/{a.redis_db}",
            "AIRFLOW__CELERY__RESULT_BACKEND": self.pg.url("db+postgresql"),
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": self.redis_prefix,
            # longer than any shard may run (the DAG's execution_timeout is 3 h)
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "14400",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(a.concurrency),
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "120",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs / "tasks"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_INSTASENT_DEFAULT": json.dumps(conn),
            "PYTHONUNBUFFERED": "1",
        })
        if worker is not None:
            # Distinct task-instance hostnames for the workers that share this machine.
            env["INSTASENT_SCALE_WORKER"] = worker
            env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = "instasent_scale_host.hostname"
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.pylib), os.environ.get("PYTHONPATH")]))
        return env

    def cli(self, *args: str, timeout: float = 300) -> str:
        """One ``airflow`` CLI command against the metadata DB (no api-server needed)."""
        started = time.monotonic()
        out = subprocess.run([self.airflow, *args], env=self.env(), capture_output=True, text=True,
                             timeout=timeout, cwd=str(self.logs))
        with open(self.logs / "cli.log", "a") as fh:
            fh.write(f"$ airflow {' '.join(args)}  ({time.monotonic() - started:.1f}s, rc={out.returncode})\n")
            fh.write(out.stdout[-4000:] + out.stderr[-4000:] + "\n")
        if out.returncode != 0:
            raise SetupError(f"airflow {' '.join(args)} failed (rc={out.returncode}):\n{out.stderr[-3000:]}")
        return out.stdout

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append((name, ok, detail))
        log(f"{'PASS' if ok else 'FAIL'}  {name}" + (f": {detail}" if detail else ""))
        return ok

    # -- boot ------------------------------------------------------------------------------
    def preflight(self) -> None:
        a = self.args
        try:
            self.pg._connect(self.pg.admin_db).close()
        except Exception as exc:
            raise SetupError(f"PostgreSQL at {self.pg.where} is unreachable: {exc}") from exc
        try:
            redis_client(a.redis_host, a.redis_port, a.redis_db).ping()
        except Exception as exc:
            raise SetupError(f"Redis at {a.redis_host}:{a.redis_port} is unreachable: {exc}") from exc
        try:
            import airflow.providers.celery  # noqa: F401
        except ImportError as exc:
            raise SetupError("apache-airflow-providers-celery is not installed (pip install '.[celery]')") from exc

    def start_emulator(self) -> None:
        argv = [sys.executable, "-m", "airflow_provider_instasent.emulator", "--host", "127.0.0.1", "--port", "0"]
        if self.args.rate_limit:
            argv += ["--rate-limit", str(self.args.rate_limit)]
        comp = self.procs.start("emulator", argv, {**os.environ, "PYTHONUNBUFFERED": "1"})

        def url() -> str | None:
            self.procs.check_alive({"emulator"})
            for line in comp.log_path.read_text(errors="replace").splitlines():
                if line.startswith("listening on "):
                    return line.split("listening on ", 1)[1].strip()
            return None

        self.emulator = Emulator(wait_for("the emulator", url, 60, 0.1))
        log(f"emulator at {self.emulator.url}")

    def boot(self) -> None:
        t0 = time.monotonic()
        self.preflight()
        self.pg.create()
        log(f"created database {self.pg.dbname}; redis db {self.args.redis_db}, key prefix {self.redis_prefix}")
        shutil.copy2(DAG_FILE, self.dags / DAG_FILE.name)
        (self.pylib / "instasent_scale_host.py").write_text(
            '"""hostname_callable for workers sharing a machine: the INSTASENT_SCALE_WORKER name."""\n'
            "import os\n\n\ndef hostname() -> str:\n    return os.environ['INSTASENT_SCALE_WORKER']\n"
        )
        self.start_emulator()
        # db migrate runs while the data is generated and the contacts are seeded
        with open(self.logs / "db-migrate.log", "wb") as out:
            migrate = subprocess.Popen([self.airflow, "db", "migrate"], env=self.env(), stdout=out,
                                       stderr=subprocess.STDOUT, cwd=str(self.logs), start_new_session=True)
        try:
            t = time.monotonic()
            n_contacts = self.args.contacts or max(500, self.args.events // 20)
            rows_per_shard = int(self.conf()["rows_per_shard"])
            self.contacts, self.n_bad = write_events(self.data, self.args.events, n_contacts,
                                                     row_group_size=max(500, min(10_000, rows_per_shard // 4)))
            self.timings["generate_s"] = time.monotonic() - t
            log(f"wrote {self.args.events} events ({self.n_bad} invalid) for {n_contacts} contacts "
                f"in {self.timings['generate_s']:.1f}s")
            assert self.emulator is not None
            self.emulator.seed_contacts(self.contacts, self.args.latency_ms)
            rc = migrate.wait(timeout=600)
        finally:
            if migrate.poll() is None:
                os.killpg(migrate.pid, signal.SIGKILL)
                migrate.wait()
        if rc != 0:
            raise SetupError(f"airflow db migrate failed:\n{(self.logs / 'db-migrate.log').read_text()[-3000:]}")
        log(f"metadata database migrated ({time.monotonic() - t0:.1f}s since start)")

        self.procs.start("api-server", [self.airflow, "api-server", "--host", "127.0.0.1", "--port",
                                        str(self.api_port), "--workers", "1"], self.env())
        self.procs.start("scheduler", [self.airflow, "scheduler", "--skip-serve-logs"], self.env())
        self.procs.start("dag-processor", [self.airflow, "dag-processor"], self.env())
        for w in self.workers:
            self.procs.start(w, [self.airflow, "celery", "worker", "--celery-hostname", w, "--concurrency",
                                 str(self.args.concurrency), "--skip-serve-logs", "--without-gossip",
                                 "--without-mingle"], self.env(worker=w))
        self.cli("pools", "set", POOL, str(self.args.pool_slots), "Instasent API: concurrent requests")

        import requests

        wait_for("the api-server", lambda: requests.get(
            f"http://127.0.0.1:{self.api_port}/api/v2/monitor/health", timeout=5).ok, 180,
            alive=self.procs.check_alive)
        for comp in self.procs.components:
            if comp.name in self.workers:
                wait_for(f"{comp.name} to be ready", comp.log_says(f"celery@{comp.name} ready."), 180,
                         alive=self.procs.check_alive)
        wait_for(f"{DAG_ID} to be parsed", lambda: self.pg.query(
            "SELECT 1 FROM dag WHERE dag_id = %s", (DAG_ID,)), 180, alive=self.procs.check_alive)
        self.cli("dags", "unpause", DAG_ID)
        self.timings["boot_s"] = time.monotonic() - t0
        log(f"deployment up in {self.timings['boot_s']:.1f}s: scheduler, dag-processor, api-server "
            f":{self.api_port}, {len(self.workers)} worker(s) x {self.args.concurrency}")

    # -- runs ------------------------------------------------------------------------------
    def conf(self) -> dict[str, Any]:
        a = self.args
        rows_per_shard = a.rows_per_shard or max(1, math.ceil(a.events / a.shards))
        return {"path": str(self.data), "kind": "events", "event_type": EVENT_TYPE,
                "rows_per_shard": rows_per_shard, "max_in_flight": a.max_in_flight,
                "max_rejected_ratio": 0.05}

    def trigger_and_wait(self, label: str) -> RunResult:
        assert self.emulator is not None
        run_id = f"scale_{label}_{self.tag}"
        cpu_before = (machine_cpu(), self.procs.cpu_seconds(), services_cpu())
        started = time.monotonic()
        self.cli("dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", json.dumps(self.conf()))
        log(f"triggered {run_id}")

        def finished() -> str | None:
            rows = self.pg.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (DAG_ID, run_id))
            state = rows[0][0] if rows else None
            return state if state in ("success", "failed") else None

        try:
            state = wait_for(f"run {run_id}", finished, self.args.timeout, 1.0,
                             alive=lambda: self.procs.check_alive())
        except SetupError as exc:
            log(str(exc))
            state = "timeout"
        seconds = time.monotonic() - started
        cpu_after = (machine_cpu(), self.procs.cpu_seconds(), services_cpu())
        self.wait_workers_idle()
        (start, end), = self.pg.query(
            "SELECT EXTRACT(EPOCH FROM start_date), EXTRACT(EPOCH FROM end_date) FROM dag_run "
            "WHERE dag_id = %s AND run_id = %s", (DAG_ID, run_id))
        tis = self.pg.query(
            "SELECT map_index, state, hostname, try_number, EXTRACT(EPOCH FROM start_date), "
            "EXTRACT(EPOCH FROM end_date) FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s AND task_id = 'ingest_shard'", (DAG_ID, run_id))
        xcom = self.pg.query(
            "SELECT value FROM xcom WHERE dag_id = %s AND run_id = %s AND task_id = 'summarize' "
            "AND key = 'return_value'", (DAG_ID, run_id))
        summary = None
        if xcom:
            value = xcom[0][0]
            summary = json.loads(value) if isinstance(value, (str, bytes)) else value
        result = RunResult(
            run_id=run_id, state=str(state), seconds=seconds,
            start=float(start) if start is not None else None, end=float(end) if end is not None else None,
            shards=len(tis), shard_states=dict(Counter(str(t[1]) for t in tis)),
            hosts=dict(Counter(str(t[2]) for t in tis if t[2])), tries=sum(int(t[3] or 0) for t in tis),
            summary=summary, emulator_events=int(self.emulator.state()["events"]),
        )
        busy = cpu_after[0][0] - cpu_before[0][0]
        ours = cpu_after[1] - cpu_before[1]
        services = cpu_after[2] - cpu_before[2]
        result.cpu = {"cores": float(os.cpu_count() or 1), "machine_busy_cores": round(busy / seconds, 2),
                      "deployment_cores": round(ours / seconds, 2),
                      "postgres_redis_cores": round(services / seconds, 2),
                      "other_cores": round(max(0.0, busy - ours - services) / seconds, 2),
                      "loadavg_1m": round(os.getloadavg()[0], 2)}
        spans = [(float(t[4]), float(t[5])) for t in tis if t[4] is not None and t[5] is not None]
        if spans:
            result.shard_seconds = sorted(end - begin for begin, end in spans)
            result.ingest_window = max(e for _, e in spans) - min(b for b, _ in spans)
        log(f"{run_id}: {result.state} in {result.wall:.1f}s (trigger to done {seconds:.1f}s), "
            f"{result.shards} shards {result.shard_states}, hosts {result.hosts}")
        if result.state != "success":
            for comp in self.procs.components:
                if comp.name.startswith("worker") or comp.name == "scheduler":
                    log(f"--- last lines of {comp.name} ---\n{comp.tail(15)}")
        return result

    def wait_workers_idle(self, timeout: float = 60) -> None:
        """Let the workers' task processes wind down (log upload, exit) after a run."""
        with contextlib.suppress(SetupError):
            wait_for("the workers to be idle", lambda: self.procs.running_tasks(set(self.workers)) == 0, timeout,
                     0.5)

    def verify_run(self, result: RunResult, expected: int, label: str) -> None:
        n = self.args.events
        self.check(f"{label}: DAG run succeeded", result.state == "success", result.state)
        planned = (result.summary or {}).get("shards")
        self.check(f"{label}: every shard succeeded", result.shards > 0 and result.shard_states == {
            "success": result.shards} and planned == result.shards, f"{result.shard_states}, summary {planned}")
        if len(self.workers) > 1:
            self.check(f"{label}: shards ran on every worker", set(self.workers) <= set(result.hosts),
                       f"{result.hosts}")
        s = result.summary or {}
        self.check(f"{label}: summary counts", (s.get("rows"), s.get("accepted"), s.get("rejected")) ==
                   (n, expected, n - expected),
                   f"rows {s.get('rows')}, accepted {s.get('accepted')}, rejected {s.get('rejected')}; "
                   f"expected {n}, {expected}, {n - expected}")
        self.check(f"{label}: emulator holds every valid event exactly once", result.emulator_events == expected,
                   f"{result.emulator_events} stored, {expected} expected")

    def run(self) -> dict[str, Any]:
        assert self.emulator is not None
        expected = self.args.events - self.n_bad
        measured: list[RunResult] = []
        for i in range(self.args.runs):
            if i:
                self.emulator.seed_contacts(self.contacts, self.args.latency_ms)
            result = self.trigger_and_wait(f"run{i + 1}")
            self.verify_run(result, expected, f"run {i + 1}")
            measured.append(result)
            if result.state != "success":
                break
        retrigger: RunResult | None = None
        if self.args.retrigger and measured and measured[-1].state == "success":
            retrigger = self.trigger_and_wait("retrigger")
            self.check("re-trigger: DAG run succeeded", retrigger.state == "success", retrigger.state)
            self.check("re-trigger: no duplicate, nothing lost (idempotent)", retrigger.emulator_events == expected,
                       f"{retrigger.emulator_events} stored, {expected} expected")
            self.check("re-trigger: the API accepted the same rows again",
                       (retrigger.summary or {}).get("accepted") == expected,
                       f"accepted {(retrigger.summary or {}).get('accepted')}")
        return self.report(measured, retrigger, expected)

    def report(self, measured: list[RunResult], retrigger: RunResult | None, expected: int) -> dict[str, Any]:
        walls = [r.wall for r in measured if r.state == "success"]
        ok_runs = [r for r in measured if r.state == "success"]
        per_run = [{
            "run_id": r.run_id, "state": r.state, "wall_s": round(r.wall, 2),
            "trigger_to_done_s": round(r.seconds, 2),
            "rows_per_s": round(self.args.events / r.wall, 1) if r.wall else None,
            "ingest_window_s": None if r.ingest_window is None else round(r.ingest_window, 2),
            "shards": r.shards, "shards_per_worker": r.hosts, "tries": r.tries,
            **{k: (r.summary or {}).get(k) for k in ("accepted", "rejected", "requests", "retries")},
            "shard_s_median": round(statistics.median(r.shard_seconds), 2) if r.shard_seconds else None,
            "shard_s_max": round(max(r.shard_seconds), 2) if r.shard_seconds else None,
            "task_seconds": round(sum(r.shard_seconds), 1) if r.shard_seconds else None,
            "cpu": r.cpu,
        } for r in measured]
        median_wall = statistics.median(walls) if walls else None
        return {
            "events": self.args.events, "valid_events": expected, "invalid_events": self.n_bad,
            "workers": len(self.workers), "concurrency": self.args.concurrency,
            "pool_slots": self.args.pool_slots, "max_in_flight": self.args.max_in_flight,
            "rows_per_shard": self.conf()["rows_per_shard"], "latency_ms": self.args.latency_ms,
            "rate_limit": self.args.rate_limit,
            "runs": per_run,
            "median_wall_s": None if median_wall is None else round(median_wall, 2),
            "median_rows_per_s": None if not median_wall else round(self.args.events / median_wall, 1),
            "shards_per_worker": dict(sum((Counter(r.hosts) for r in ok_runs), Counter())),
            "retrigger": None if retrigger is None else {
                "state": retrigger.state, "wall_s": round(retrigger.wall, 2),
                "emulator_events": retrigger.emulator_events, "shards_per_worker": retrigger.hosts},
            "boot_s": round(self.timings.get("boot_s", 0.0), 1),
        }

    def shutdown(self) -> None:
        t = time.monotonic()
        left = self.procs.stop(grace=self.args.grace)
        self.check("shutdown: no process left", not left,
                   f"{len(left)} left: {left[:5]}" if left else f"{len(self.procs.components)} components stopped "
                   f"in {time.monotonic() - t:.1f}s")
        try:
            removed = redis_cleanup(self.args.redis_host, self.args.redis_port, self.args.redis_db, self.redis_prefix)
            log(f"deleted {removed} redis keys under {self.redis_prefix}")
        except Exception as exc:
            self.check("redis cleanup", False, str(exc))
        try:
            self.pg.drop()
            self.check("metadata database dropped", not self.pg.exists(), self.pg.dbname)
        except Exception as exc:
            self.check("metadata database dropped", False, str(exc))


def print_summary(report: dict[str, Any]) -> None:
    print("\n================ summary ================")
    print(f"events           {report['events']} ({report['valid_events']} valid, {report['invalid_events']} invalid)")
    print(f"deployment       {report['workers']} worker(s) x concurrency {report['concurrency']}, pool "
          f"{report['pool_slots']} slots, max_in_flight {report['max_in_flight']}/shard, "
          f"emulator latency {report['latency_ms']} ms")
    print(f"boot             {report['boot_s']} s")
    for r in report["runs"]:
        print(f"{r['run_id']:<40} {r['state']:<8} wall {r['wall_s']:>7} s  {r['rows_per_s']} rows/s  "
              f"{r['shards']} shards {r['shards_per_worker']}, shard median {r['shard_s_median']} s, "
              f"{r['requests']} requests, {r['retries']} retries; CPU busy {r['cpu'].get('machine_busy_cores')} "
              f"of {r['cpu'].get('cores')} cores: deployment {r['cpu'].get('deployment_cores')}, PostgreSQL+Redis "
              f"{r['cpu'].get('postgres_redis_cores')}, other {r['cpu'].get('other_cores')}")
    print(f"median wall      {report['median_wall_s']} s -> {report['median_rows_per_s']} rows/s")
    print(f"shards/worker    {report['shards_per_worker']}")
    if report.get("retrigger"):
        rt = report["retrigger"]
        print(f"re-trigger       {rt['state']} in {rt['wall_s']} s; emulator events {rt['emulator_events']} "
              f"(shards {rt['shards_per_worker']})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=300_000, help="page-view events to ingest (default 300000)")
    p.add_argument("--contacts", type=int, default=None, help="contacts they belong to (default events/20)")
    p.add_argument("--workers", type=int, choices=(1, 2), default=2, help="Celery workers (default 2)")
    p.add_argument("--concurrency", type=int, default=2, help="task slots per worker (default 2)")
    p.add_argument("--shards", type=int, default=16, help="target number of shards (default 16)")
    p.add_argument("--rows-per-shard", type=int, default=None, help="overrides --shards")
    p.add_argument("--max-in-flight", type=int, default=4, help="concurrent requests per shard (default 4, max 4)")
    p.add_argument("--pool-slots", type=int, default=32, help=f"size of the {POOL} pool (default 32)")
    p.add_argument("--latency-ms", type=float, default=20.0, help="emulator latency per request (default 20)")
    p.add_argument("--rate-limit", type=float, default=None, help="emulator requests/minute per token and class")
    p.add_argument("--runs", type=int, default=1, help="measured runs, each on a reset emulator (default 1)")
    p.add_argument("--no-retrigger", dest="retrigger", action="store_false",
                   help="skip the idempotency re-trigger")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for each DAG run (default 600)")
    p.add_argument("--grace", type=float, default=15, help="seconds between SIGTERM and SIGKILL (default 15)")
    p.add_argument("--keep-logs", action="store_true", help="keep .work/scale/<run>/ after a successful run")
    p.add_argument("--json", dest="json_path", default=None, help="also write the report to this file")
    p.add_argument("--work-dir", default=str(ROOT / ".work" / "scale"), help="where run directories go")
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                   help="PostgreSQL server (its database is only used to create/drop airflow_scale_<pid>)")
    p.add_argument("--redis-host", default="127.0.0.1")
    p.add_argument("--redis-port", type=int, default=6379)
    p.add_argument("--redis-db", type=int, default=11, help="Redis database number for the broker (default 11)")
    args = p.parse_args(argv)
    if args.events < 1 or args.runs < 1 or args.concurrency < 1 or args.shards < 1:
        p.error("--events, --runs, --concurrency and --shards must be >= 1")
    if not 1 <= args.max_in_flight <= 4:
        p.error("--max-in-flight must be between 1 and 4 (the DAG's MAX_IN_FLIGHT pool slots per shard)")
    return args


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM/SIGINT raise KeyboardInterrupt so the deployment is always torn down."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dep = Deployment(args)
    log(f"run directory {dep.run_dir}")
    started = time.monotonic()
    report: dict[str, Any] | None = None
    code = 0
    with _signals_raise():
        try:
            dep.boot()
            report = dep.run()
        except SetupError as exc:
            log(f"setup error: {exc}")
            code = 2
        except KeyboardInterrupt as exc:
            log(f"interrupted ({exc})")
            code = 130
        finally:
            with contextlib.suppress(KeyboardInterrupt):
                dep.shutdown()
    failed = [c for c in dep.checks if not c[1]]
    if code == 0 and failed:
        code = 1
    total = time.monotonic() - started
    if report is not None:
        report["total_s"] = round(total, 1)
        report["checks"] = [{"name": n, "ok": ok, "detail": d} for n, ok, d in dep.checks]
        report["ok"] = code == 0
        print_summary(report)
        text = json.dumps(report, indent=2)
        (dep.run_dir / "report.json").write_text(text)
        if args.json_path:
            Path(args.json_path).write_text(text)
    print(f"total            {total:.1f} s")
    print(f"checks           {len(dep.checks) - len(failed)}/{len(dep.checks)} passed" +
          (f"; FAILED: {', '.join(n for n, _, _ in failed)}" if failed else ""))
    if code == 0 and not args.keep_logs:
        shutil.rmtree(dep.run_dir, ignore_errors=True)
    else:
        print(f"logs             {dep.run_dir}")
    return code


if __name__ == "__main__":
    sys.exit(main())
