"""Measure the emulator's throughput: ``python -m airflow_provider_instasent.emulator.bench``.

Starts an emulator in a subprocess (its own GIL, as in the project's benchmarks), seeds
contacts, then runs ``--clients`` threads, each with one keep-alive ``http.client``
connection, posting ``--batch``-item event batches (all new ``_event_id``s, so every event is
validated and stored) for ``--seconds``; then the same for a small GET. Prints requests/s.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any
from urllib.parse import urlsplit

import orjson

from .runner import running

TOKEN = "demo-admin-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
EVENTS_PATH = "/v1/project/demo/datasource/dsapi/stream/events"
CONTACTS_PATH = "/v1/project/demo/datasource/dsapi/stream/contacts"
GET_PATH = "/v1/project/demo"


def _connect(base_url: str) -> http.client.HTTPConnection:
    parts = urlsplit(base_url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=60)


def _call(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None) -> int:
    conn.request(method, path, body=body, headers=HEADERS)
    response = conn.getresponse()
    response.read()
    return response.status


def seed_contacts(base_url: str, users: int) -> None:
    conn = _connect(base_url)
    for start in range(0, users, 100):
        batch = [
            {"_user_id": f"bench-{i}", "plan": "pro", "loyalty_points": i}
            for i in range(start, min(users, start + 100))
        ]
        status = _call(conn, "POST", CONTACTS_PATH, orjson.dumps(batch))
        if status != 202:
            raise RuntimeError(f"seeding contacts failed: HTTP {status}")
    conn.close()


def _event_batch(client: int, n: int, size: int, users: int) -> bytes:
    return orjson.dumps(
        [
            {
                "_user_id": f"bench-{(n * size + j) % users}",
                "_event_id": f"c{client}-b{n}-e{j}",
                "_event_type": "ecommerce_order_create",
                "_event_parameters": {
                    "order_id": f"o-{client}-{n}-{j}",
                    "amount": 19.99,
                    "currency": "EUR",
                    "items": ["sku-1", "sku-2"],
                },
            }
            for j in range(size)
        ]
    )


def run_clients(
    base_url: str,
    clients: int,
    seconds: float,
    make_request: Callable[[int, int], tuple[str, str, bytes | None]],
) -> dict[str, Any]:
    """Run ``clients`` keep-alive threads for ``seconds``; return counts and latencies."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    barrier = threading.Barrier(clients + 1)
    deadline = [0.0]

    def worker(idx: int) -> None:
        conn = _connect(base_url)
        n = 0
        barrier.wait()
        while time.perf_counter() < deadline[0]:
            method, path, body = make_request(idx, n)
            t0 = time.perf_counter()
            status = _call(conn, method, path, body)
            latencies[idx].append(time.perf_counter() - t0)
            if status >= 400:
                errors[idx] += 1
            n += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + seconds
    start = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    flat = sorted(x for lat in latencies for x in lat)
    return {
        "requests": len(flat),
        "errors": sum(errors),
        "seconds": elapsed,
        "rps": len(flat) / elapsed if elapsed else 0.0,
        "p50_ms": statistics.median(flat) * 1000 if flat else 0.0,
        "p99_ms": flat[int(len(flat) * 0.99) - 1] * 1000 if flat else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m airflow_provider_instasent.emulator.bench", description=__doc__
    )
    p.add_argument("--clients", type=int, default=4, help="concurrent keep-alive clients (default 4)")
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each measurement (default 5)")
    p.add_argument("--batch", type=int, default=100, help="events per request (default 100)")
    p.add_argument("--users", type=int, default=1000, help="contacts seeded before the run (default 1000)")
    p.add_argument("--url", help="measure an already running emulator at this base URL")
    p.add_argument("--in-process", action="store_true", help="serve from a thread of this process instead")
    args = p.parse_args(argv)

    ctx = nullcontext(args.url) if args.url else running(subprocess=not args.in_process)
    with ctx as base_url:
        seed_contacts(base_url, args.users)
        size = args.batch
        users = args.users
        events = run_clients(
            base_url,
            args.clients,
            args.seconds,
            lambda c, n: ("POST", EVENTS_PATH, _event_batch(c, n, size, users)),
        )
        gets = run_clients(base_url, args.clients, args.seconds, lambda c, n: ("GET", GET_PATH, None))
    mode = "url" if args.url else ("in-process" if args.in_process else "subprocess")
    print(f"emulator bench ({mode}, {args.clients} keep-alive clients, {args.seconds:g} s each)")
    print(
        f"  POST {size}-item event batches: {events['rps']:.0f} requests/s"
        f" = {events['rps'] * size:.0f} events/s"
        f" (p50 {events['p50_ms']:.1f} ms, p99 {events['p99_ms']:.1f} ms, errors {events['errors']})"
    )
    print(
        f"  GET /v1/project/demo:          {gets['rps']:.0f} requests/s"
        f" (p50 {gets['p50_ms']:.2f} ms, p99 {gets['p99_ms']:.2f} ms, errors {gets['errors']})"
    )
    return 0 if not events["errors"] and not gets["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
