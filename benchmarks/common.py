"""Shared helpers of the benchmarks: configuration, result rows, the emulator as a child
process, child processes whose peak RSS is measured, timing and machine facts.

Nothing here is a test: the benchmarks report figures and PASS/MISS against the targets of
issue 7, they never assert.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / ".data"

TOKEN = "demo-admin-token"
PROJECT = "demo"
EVENT_TYPE = "ecommerce_order_create"

#: PostgreSQL for the export benchmark (a scratch database: tables are created and dropped).
PG_URL = (os.environ.get("INSTASENT_BENCH_POSTGRES_URL") or os.environ.get("INSTASENT_TEST_POSTGRES_URL")
          or "postgresql://postgres@127.0.0.1:5432/test")

#: Environment that keeps a child process on one core (BLAS/OpenMP/Arrow thread pools).
ONE_CORE_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "OMP_THREAD_LIMIT": "1",
}


# ---------------------------------------------------------------------------------------------
# configuration and results
# ---------------------------------------------------------------------------------------------
@dataclass
class Config:
    quick: bool = False
    runs: int | None = None  # None: each benchmark's default
    out: Path = BENCH_DIR / "results.md"

    def n_runs(self, default: int, quick: int = 1) -> int:
        if self.runs is not None:
            return max(1, self.runs)
        return quick if self.quick else default

    def log(self, message: str) -> None:
        print(f"  .. {message}", file=sys.stderr, flush=True)


@dataclass
class Row:
    """One line of the results table."""

    bench: str
    metric: str
    result: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""
    status: str = "INFO"  # PASS / MISS / INFO / SKIP / FAIL
    runs: str = ""
    value: float | None = None


@dataclass
class Section:
    """What one benchmark module reports."""

    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # markdown blocks (per-run figures, profiles)
    seconds: float = 0.0

    def row(self, *args: Any, **kwargs: Any) -> Row:
        r = Row(self.name, *args, **kwargs)
        self.rows.append(r)
        return r


def verdict(ok: bool | None) -> str:
    if ok is None:
        return "INFO"
    return "PASS" if ok else "MISS"


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def fmt_int(v: float) -> str:
    return f"{v:,.0f}"


def fmt_rate(v: float, unit: str = "/s") -> str:
    if v >= 100:
        return f"{v:,.0f}{unit}"
    return f"{v:,.1f}{unit}"


def fmt_mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:,.0f} MB"


def fmt_ratio(v: float) -> str:
    return f"{v:,.1f}x" if v >= 10 else f"{v:,.2f}x"


def fmt_pct(v: float) -> str:
    return f"{100 * v:.1f}%"


# ---------------------------------------------------------------------------------------------
# profiling
# ---------------------------------------------------------------------------------------------
def profile_call(func: Callable[[], Any], *, top: int = 15, sort: str = "tottime") -> str:
    """cProfile ``func()`` (this thread only) and return the top entries as text."""
    prof = cProfile.Profile()
    prof.enable()
    try:
        func()
    finally:
        prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats(sort).print_stats(top)
    return trim_profile(out.getvalue())


def trim_profile(text: str) -> str:
    """pstats output without the header noise and with paths shortened to the package."""
    lines = []
    started = False
    for line in text.splitlines():
        if "ncalls" in line:
            started = True
        if not started or not line.strip():
            continue
        for prefix in (sys.prefix + "/lib/python3.11/site-packages/", str(ROOT) + "/", sys.base_prefix + "/lib/"):
            line = line.replace(prefix, "")
        lines.append(line.rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# child processes with a measured peak RSS
# ---------------------------------------------------------------------------------------------
@dataclass
class ChildResult:
    data: dict[str, Any]
    peak_rss: int  # bytes: the child's own VmHWM (peak resident set of its address space)
    polled_rss: int  # bytes: the highest RSS the parent saw polling it every 20 ms (a cross-check)
    seconds: float
    returncode: int


def run_child(args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 1200.0,
              python: str | None = None) -> ChildResult:
    """Run ``python ARGS`` and return its JSON result (its last stdout line) and peak RSS.

    ``python``: another interpreter than this one (the peers' venv); ``PYTHONPATH`` is
    ``benchmarks/`` followed by ``env``'s or this process' (an empty one in ``env``: only
    ``benchmarks/``).

    The peak RSS is the child's ``VmHWM`` (``/proc/self/status``), read by the child itself
    when its work is done (:func:`child_output`): the high-water mark of its own address
    space, which starts fresh at ``exec``. ``ru_maxrss`` from ``wait4``/``RUSAGE_CHILDREN`` is
    not used: Linux carries the forking parent's high-water mark into the child's rusage, so
    a big harness would show up in it. The parent also polls the child's RSS (psutil, every
    20 ms) as a cross-check.
    """
    import psutil

    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(BENCH_DIR), full_env.get("PYTHONPATH")) if p)
    polled = 0
    with TempFile() as out_path, open(out_path, "w+b") as out:
        started = time.perf_counter()
        proc = subprocess.Popen([python or sys.executable, *args], stdout=out, env=full_env, cwd=str(ROOT))
        watched = psutil.Process(proc.pid)
        try:
            proc.wait(timeout=0.02)
        except subprocess.TimeoutExpired:
            deadline = started + timeout
            while proc.poll() is None:
                with contextlib.suppress(psutil.Error):
                    polled = max(polled, watched.memory_info().rss)
                if time.perf_counter() > deadline:
                    proc.kill()
                    proc.wait()
                    break
                time.sleep(0.02)
        seconds = time.perf_counter() - started
        out.seek(0)
        text = out.read().decode(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    data: dict[str, Any] = {}
    if lines:
        with contextlib.suppress(ValueError):
            data = json.loads(lines[-1])
    if proc.returncode != 0 or not data:
        tail = "\n".join(lines[-20:])
        raise RuntimeError(f"benchmark child {' '.join(args)} exited {proc.returncode}:\n{tail}")
    peak = int(data.get("vm_hwm") or polled)
    return ChildResult(data, peak, polled, seconds, proc.returncode)


class TempFile:
    """A temporary file path under benchmarks/.data, removed on exit."""

    def __enter__(self) -> Path:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        self.path = DATA_DIR / f"tmp-{os.getpid()}-{time.monotonic_ns()}"
        return self.path

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def vm_hwm() -> int:
    """This process' peak resident set size (``VmHWM``), bytes; 0 where /proc is missing."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def child_output(data: dict[str, Any]) -> None:
    """What a child process prints last: its JSON result, with its peak RSS (``vm_hwm``)."""
    data.setdefault("vm_hwm", vm_hwm())
    sys.stdout.flush()
    print(json.dumps(data), flush=True)


def current_rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


# ---------------------------------------------------------------------------------------------
# the emulator, in its own process
# ---------------------------------------------------------------------------------------------
class EmulatorProcess:
    """``python -m airflow_provider_instasent.emulator`` as a child process (its own GIL and
    memory, neither counted in the benchmark's figures)."""

    def __init__(self, *, latency_ms: float = 0.0, rate_limit: float | None = None) -> None:
        cmd = [sys.executable, "-m", "airflow_provider_instasent.emulator", "--port", "0",
               "--latency-ms", f"{latency_ms:g}"]
        if rate_limit:
            cmd += ["--rate-limit", f"{rate_limit:g}"]
        self.latency_ms = latency_ms
        self.rate_limit = rate_limit
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"the emulator did not start: {line!r}")
        self.url = line.split()[-1]

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        import requests

        response = requests.request(method, f"{self.url}/_emulator/{path}", json=body, timeout=60)
        response.raise_for_status()
        return response.json() if response.content else None

    def state(self) -> dict[str, Any]:
        return self.admin("GET", "state")

    def reset(self) -> None:
        self.admin("POST", "reset")

    def set_faults(self, **settings: Any) -> None:
        self.admin("POST", "faults", settings)

    def cpu(self) -> float:
        """CPU seconds (user + system) the emulator process has used so far."""
        import psutil

        t = psutil.Process(self.proc.pid).cpu_times()
        return float(t.user + t.system)

    def rss(self) -> int:
        import psutil

        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_SHARED: dict[int, tuple[EmulatorProcess, dict[str, Any]]] = {}


def audience_emulator(n: int, cfg: Config) -> tuple[EmulatorProcess, dict[str, Any]]:
    """An emulator (no latency, no limit) holding an audience of about ``n`` contacts,
    loaded once per harness run through the ingest engine and shared by the benchmarks that
    export it. Returns it and the load's figures. :func:`close_shared` stops it."""
    if n in _SHARED:
        return _SHARED[n]
    from data import audience_contacts

    from airflow_provider_instasent.ingest import write_contacts

    emu = EmulatorProcess()
    try:
        table = audience_contacts(n)
        cfg.log(f"loading {n:,} contacts into the emulator (write_contacts) ...")
        with make_client(emu.url) as client:
            started = time.perf_counter()
            report = write_contacts(client, table, on_invalid="skip", progress_interval=0)
            seconds = time.perf_counter() - started
        contacts = emu.state()["audience_contacts"]
        info = {"rows": n, "accepted": report.accepted, "rejected": report.rejected, "seconds": seconds,
                "audience": contacts, "emulator_rss": emu.rss()}
        cfg.log(f"loaded {contacts:,} audience contacts in {seconds:.1f} s ({report.accepted / seconds:,.0f}/s)")
    except BaseException:
        emu.stop()
        raise
    _SHARED[n] = (emu, info)
    return emu, info


def close_shared() -> None:
    while _SHARED:
        _, (emu, _info) = _SHARED.popitem()
        emu.stop()


def make_client(url: str, **kwargs: Any) -> Any:
    from airflow_provider_instasent import InstasentClient

    kwargs.setdefault("timeout", (10.0, 120.0))
    return InstasentClient(token=TOKEN, project=PROJECT, base_url=url, **kwargs)


# ---------------------------------------------------------------------------------------------
# machine facts
# ---------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return "not installed"


def _git() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + (" + uncommitted changes" if dirty else "") if rev else "unknown"
    except Exception:
        return "unknown"


def machine_info() -> dict[str, str]:
    import psutil

    mem = psutil.virtual_memory().total
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} logical ({psutil.cpu_count(logical=False) or '?'} physical)",
        "ram": f"{mem / 2**30:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "pyarrow": _version("pyarrow"),
        "pandas": _version("pandas"),
        "duckdb": _version("duckdb"),
        "psycopg2": _version("psycopg2-binary") if _version("psycopg2") == "not installed" else _version("psycopg2"),
        "SQLAlchemy": _version("SQLAlchemy"),
        "orjson": _version("orjson"),
        "requests": _version("requests"),
        "jsonschema": _version("jsonschema"),
        "fastjsonschema": _version("fastjsonschema"),
        "airflow-provider-instasent": f"{_version('airflow-provider-instasent')} (git {_git()})",
    }


def load_average() -> str:
    with contextlib.suppress(OSError):
        one, five, fifteen = os.getloadavg()
        return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"
    return "n/a"
