"""``instasent-emulator`` / ``python -m airflow_provider_instasent.emulator``.

Prints ``listening on http://HOST:PORT`` once the socket is bound, serves until SIGTERM or
SIGINT, then exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .faults import FAULT_KINDS, SettingsError
from .fixture import FixtureError
from .runner import Emulator
from .store import tune_gc_for_the_store

DEFAULT_PORT = 8787


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="instasent-emulator",
        description="Local emulator of the Instasent Product and Ingest APIs (base URL http://HOST:PORT, "
        "API under /v1, admin under /_emulator).",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to listen on; 0 picks a free port (default: {DEFAULT_PORT})",
    )
    p.add_argument(
        "--config", metavar="FILE", help="fixture file (JSON or YAML); default: the built-in fixture"
    )
    p.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="each /v1 answer leaves MS after its request at the earliest (pushes write once it has passed)",
    )
    p.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        metavar="N",
        help="requests per minute per token and endpoint class (ingest, hot, default)",
    )
    p.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="share (0..1) of /v1 requests answered with a 5xx or a dropped connection",
    )
    p.add_argument(
        "--fault-kinds",
        default=",".join(FAULT_KINDS),
        help=f"comma-separated subset of {','.join(FAULT_KINDS)} (default: all)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the fault generator")
    p.add_argument(
        "--queue-delay-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="queue writes made without ?_sync and apply them MS later (default 0: apply at once)",
    )
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        emulator = Emulator(
            args.config,
            host=args.host,
            port=args.port,
            latency_ms=args.latency_ms,
            rate_limit=args.rate_limit,
            fault_rate=args.fault_rate,
            fault_kinds=args.fault_kinds.split(","),
            seed=args.seed,
            verbose=args.verbose,
            queue_delay_ms=args.queue_delay_ms,
        )
        server = emulator.bind()
    except (FixtureError, SettingsError) as exc:
        print(f"instasent-emulator: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"instasent-emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever() to return, so it must not run on this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    tune_gc_for_the_store()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening on http://{args.host}:{emulator.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.close_connections()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
