"""Start and stop an emulator: in a thread of this process, or as a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .app import App
from .clock import Clock
from .faults import check_settings
from .fixture import FixtureSource, load_fixture
from .server import EmulatorServer
from .store import Store


class Emulator:
    """An Instasent emulator served by a background thread of this process.

    >>> with Emulator() as emu:
    ...     requests.get(emu.base_url + "/v1/", headers={"Authorization": "Bearer demo-admin-token"})

    ``config`` is ``None`` (the built-in fixture), a JSON/YAML file path or a parsed mapping.
    ``base_url`` is ``http://HOST:PORT`` (no ``/v1``).
    """

    def __init__(
        self,
        config: FixtureSource = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0.0,
        rate_limit: float | None = None,
        fault_rate: float = 0.0,
        fault_kinds: Iterable[str] | None = None,
        seed: int | None = None,
        verbose: bool = False,
        queue_delay_ms: float = 0.0,
    ) -> None:
        self.fixture = load_fixture(config)
        self.store = Store(self.fixture)
        settings = check_settings(
            latency_ms, rate_limit, fault_rate, list(fault_kinds) if fault_kinds is not None else None, seed
        )
        self.app = App(self.store, settings, queue_delay_ms=queue_delay_ms)
        self.host = host
        self.port = port
        self.verbose = verbose
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def bind(self) -> EmulatorServer:
        """Open the listening socket (resolving port 0) without serving yet."""
        if self._server is None:
            self._server = EmulatorServer((self.host, self.port), self.app, verbose=self.verbose)
            self.port = self._server.port
        return self._server

    def start(self) -> str:
        """Serve from a daemon thread; return the base URL."""
        if self._thread is not None:
            return self.base_url
        server = self.bind()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="instasent-emulator", daemon=True
        )
        self._thread.start()
        return self.base_url

    def serve_forever(self) -> None:
        """Serve from the calling thread until ``stop`` is called from another thread."""
        self.bind().serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        server = self._server
        if server is None:
            return
        if self._thread is not None:  # shutdown() would wait forever if serve_forever never ran
            server.shutdown()
        server.close_connections()
        server.server_close()
        self.store.queue.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    # -- admin shortcuts (the same as the /_emulator endpoints) ------------------------------------
    def state(self, project: str | None = None) -> dict[str, Any]:
        return self.store.state(project)

    def reset(self) -> None:
        self.app.reset()

    def automations(self, project: str | None = None) -> list[dict[str, Any]]:
        return self.store.automations(project)

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Change ``latency_ms``, ``rate_limit``, ``fault_rate``, ``fault_kinds`` or ``seed``."""
        return self.app.update_settings(changes)

    def set_queue_delay(self, queue_delay_ms: float) -> dict[str, Any]:
        """Same as ``POST /_emulator/queue {"delay_ms": ...}``; 0 applies what is pending first."""
        self.app.set_queue_delay(queue_delay_ms)
        return self.app.queue_state()

    def flush_queue(self) -> int:
        """Apply every queued write now (``POST /_emulator/queue/flush``); return how many."""
        return self.store.queue.flush()

    def queue_state(self) -> dict[str, Any]:
        """``{"delay_ms", "pending"}`` (``GET /_emulator/queue``)."""
        return self.app.queue_state()

    @property
    def clock(self) -> Clock:
        """The emulator's clock (``/_emulator/clock``): ``clock.advance(seconds)``,
        ``clock.set(unix_time)``, ``clock.now()``; ``reset()`` puts it back on real time."""
        return self.store.clock


def _cli_args(
    config: str | None,
    host: str,
    port: int,
    latency_ms: float,
    rate_limit: float | None,
    fault_rate: float,
    fault_kinds: Iterable[str] | None,
    seed: int | None,
    queue_delay_ms: float = 0.0,
) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "airflow_provider_instasent.emulator",
        "--host",
        host,
        "--port",
        str(port),
        "--latency-ms",
        str(latency_ms),
        "--fault-rate",
        str(fault_rate),
    ]
    if config is not None:
        args += ["--config", config]
    if rate_limit is not None:
        args += ["--rate-limit", str(rate_limit)]
    if fault_kinds is not None:
        args += ["--fault-kinds", ",".join(fault_kinds)]
    if seed is not None:
        args += ["--seed", str(seed)]
    if queue_delay_ms:
        args += ["--queue-delay-ms", str(queue_delay_ms)]
    return args


@contextlib.contextmanager
def _subprocess_emulator(
    config: FixtureSource,
    host: str,
    port: int,
    latency_ms: float,
    rate_limit: float | None,
    fault_rate: float,
    fault_kinds: Iterable[str] | None,
    seed: int | None,
    queue_delay_ms: float = 0.0,
    startup_timeout: float = 30.0,
) -> Iterator[str]:
    tmp: str | None = None
    if isinstance(config, Mapping):
        fd, tmp = tempfile.mkstemp(prefix="instasent-emulator-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(config, fh)
        config_path: str | None = tmp
    else:
        config_path = None if config is None else str(Path(config))
    args = _cli_args(
        config_path, host, port, latency_ms, rate_limit, fault_rate, fault_kinds, seed, queue_delay_ms
    )
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=None, text=True)
    try:
        assert proc.stdout is not None
        line_holder: list[str] = []
        reader = threading.Thread(
            target=lambda: line_holder.append(proc.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        reader.join(startup_timeout)
        line = line_holder[0].strip() if line_holder else ""
        if not line.startswith("listening on "):
            raise RuntimeError(f"the emulator subprocess did not start (exit code {proc.poll()}): {line!r}")
        yield line[len("listening on ") :]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if tmp is not None:
            os.unlink(tmp)


@contextlib.contextmanager
def running(
    config: FixtureSource = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    latency_ms: float = 0.0,
    rate_limit: float | None = None,
    fault_rate: float = 0.0,
    fault_kinds: Iterable[str] | None = None,
    seed: int | None = None,
    subprocess: bool = False,
    queue_delay_ms: float = 0.0,
) -> Iterator[str]:
    """Run an emulator for the duration of a ``with`` block and yield its base URL.

    ``subprocess=True`` runs it as ``python -m airflow_provider_instasent.emulator`` in a child
    process (its own GIL: use it for benchmarks); otherwise it is served by a thread.
    ``queue_delay_ms`` > 0 queues writes made without ``?_sync`` for that long.
    """
    if subprocess:
        with _subprocess_emulator(
            config, host, port, latency_ms, rate_limit, fault_rate, fault_kinds, seed, queue_delay_ms
        ) as url:
            yield url
        return
    emulator = Emulator(
        config,
        host=host,
        port=port,
        latency_ms=latency_ms,
        rate_limit=rate_limit,
        fault_rate=fault_rate,
        fault_kinds=fault_kinds,
        seed=seed,
        queue_delay_ms=queue_delay_ms,
    )
    emulator.start()
    try:
        yield emulator.base_url
    finally:
        emulator.stop()
