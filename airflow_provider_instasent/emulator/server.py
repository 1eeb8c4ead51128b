"""HTTP plumbing: a threaded HTTP/1.1 keep-alive server around ``App``.

Requests are parsed by httptools (the bindings to llhttp, Node.js' HTTP parser, that uvicorn
uses; installed with Airflow): request line, headers, ``Content-Length`` and chunked bodies,
keep-alive (HTTP/1.1, and HTTP/1.0 with ``Connection: keep-alive``), pipelining. Malformed
requests are answered with a JSON 400 (413, 431 for the limits below) and the connection is
closed. Threads and sockets are the standard library's ``socketserver``. Why httptools, and
what the alternatives cost: ``docs/adr/0006-emulator-http-layer.md``.

Speed matters (the emulator must never be the bottleneck of a benchmark): every response
(status line, headers and body) goes out in a single ``send`` with Nagle disabled, so
keep-alive clients never wait on delayed ACKs. Latency and faults apply to ``/v1`` requests
only; admin endpoints are never delayed, faulted or rate limited. The latency is the time an
answer takes, at the least: a push is validated while it runs (not after it, where the
requests that arrived together would queue for the GIL one behind the other) and written
once it has passed, so a write still lands ``latency`` after its request.
"""

from __future__ import annotations

import socket
import socketserver
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import httptools

from .app import API_PREFIX, App
from .core import Response, error_response, reason

MAX_LINE = 65536  # the largest request head (target and headers), in bytes
MAX_HEADERS = 200
MAX_BODY = 64 * 1024 * 1024
RECV_SIZE = 65536
SERVER_NAME = "instasent-emulator"


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Request(NamedTuple):
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


class _Collector:
    """httptools callbacks: gather each complete request, enforcing the size limits."""

    def __init__(self, send_continue: Callable[[], None]) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.send_continue = send_continue
        self.done: deque[_Request] = deque()
        self.error: _BadRequest | None = None  # raised in a callback (httptools wraps it)
        self.on_message_begin()

    def feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if self.error is not None:
                raise self.error from None
            raise

    def _fail(self, status: int, message: str) -> None:
        self.error = _BadRequest(status, message)
        raise self.error

    # -- the callbacks ---------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.target: list[bytes] = []
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.head_size = 0
        self.header_count = 0
        self.body_size = 0

    def on_url(self, url: bytes) -> None:
        self.target.append(url)
        self.head_size += len(url)
        if self.head_size > MAX_LINE:
            self._fail(431, "Request line or header too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value)
        if self.head_size > MAX_LINE:
            self._fail(431, "Request line or header too long")
        self.header_count += 1
        if self.header_count > MAX_HEADERS:
            self._fail(431, "Too many headers")
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        if int(self.headers.get("content-length") or 0) > MAX_BODY:  # llhttp has checked the digits
            self._fail(413, "Request body too large")
        if self.headers.get("expect", "").lower() == "100-continue" and not self.done:
            self.send_continue()  # not behind pipelined requests: their answers come first

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > MAX_BODY:
            self._fail(413, "Request body too large")
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.done.append(
            _Request(
                self.parser.get_method().decode("latin-1"),
                b"".join(self.target).decode("latin-1"),
                self.headers,
                body,
                self.parser.should_keep_alive(),
            )
        )


def _no_wait() -> None:
    pass


class _Deadline:
    """The end of one request's emulated latency: ``wait`` sleeps until then (once past, at once)."""

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at

    def wait(self) -> None:
        left = self.at - time.perf_counter()
        if left > 0:
            time.sleep(left)


class EmulatorHandler(socketserver.StreamRequestHandler):
    """One connection: parse requests with httptools and answer them in order."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 300  # idle keep-alive connections are closed after this many seconds
    server: EmulatorServer
    _head_request = False

    def handle(self) -> None:
        requests = _Collector(self._send_continue)
        failure: Exception | None = None  # answered once the requests before it are
        try:
            while True:
                if not requests.done:
                    if failure is not None:
                        raise failure
                    data = self.connection.recv(RECV_SIZE)
                    if not data:
                        return
                    try:
                        requests.feed(data)
                    except httptools.HttpParserUpgrade:  # the rest is not HTTP/1.1: answer, then close
                        failure = ConnectionAbortedError()
                    except (_BadRequest, httptools.HttpParserError) as exc:
                        failure = exc
                    continue
                request = requests.done.popleft()
                upgrade = isinstance(failure, ConnectionAbortedError) and not requests.done
                close = not request.keep_alive or upgrade
                if not self._handle_one(request, close) or close:
                    return
        except _BadRequest as exc:
            self._write_error(exc.status, exc.message)
        except httptools.HttpParserError as exc:
            self._write_error(400, f"Malformed request: {exc}")
        except OSError:  # timeouts, resets, broken pipes, an upgrade request
            pass

    def _send_continue(self) -> None:
        self.connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _write_error(self, status: int, message: str) -> None:
        try:
            self._write(error_response(status, message), close=True)
        except OSError:
            pass

    # -- one request -----------------------------------------------------------------------------
    def _handle_one(self, request: _Request, close: bool) -> bool:
        """Answer ``request``; ``False`` if the connection was dropped (an emulated fault)."""
        method, target, headers, body, _ = request
        self._head_request = method == "HEAD"
        srv = self.server
        app = srv.app
        started = time.perf_counter()
        fault = None
        response: Response | None = None
        wait = _no_wait
        if target == API_PREFIX or target.startswith((API_PREFIX + "/", API_PREFIX + "?")):
            latency = app.settings.latency_ms
            if latency > 0:
                wait = _Deadline(started + latency / 1000.0).wait
            fault = app.faults.roll()
            if fault == "drop_before":
                wait()
                self._drop(method, target, "drop_before", started)
                return False
            if fault in ("500", "502", "503"):
                wait()
                status = int(fault)
                response = error_response(status, f"Emulated fault: {status} {reason(status)}")
                response.headers.extend(app.rate_headers(method, target, headers))
                response.headers.append(("X-Emulator-Fault", fault))
        if response is None:
            # A push validates during the latency and writes after it (App.handle); every
            # answer leaves once the latency has passed, however early it was ready.
            response = app.handle(method, target, headers, body, wait)
            wait()
        if fault == "drop_after":
            self._drop(method, target, "drop_after", started)
            return False
        self._write(response, close)
        if srv.verbose:
            self._log(method, target, str(response.status), started)
        return True

    def _drop(self, method: str, target: str, kind: str, started: float) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self.server.verbose:
            self._log(method, target, kind, started)

    def _write(self, response: Response, close: bool) -> None:
        """Send ``response`` in one write: status line, headers and body together."""
        head = [
            f"HTTP/1.1 {response.status} {reason(response.status)}\r\n"
            f"Server: {SERVER_NAME}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(response.body)}\r\n"
        ]
        for name, value in response.headers:
            head.append(f"{name}: {value}\r\n")
        if close:
            head.append("Connection: close\r\n")
        head.append("\r\n")
        body = b"" if self._head_request else response.body
        self.wfile.write("".join(head).encode("latin-1") + body)

    def _log(self, method: str, target: str, outcome: str, started: float) -> None:
        ms = (time.perf_counter() - started) * 1000
        sys.stderr.write(f"{self.client_address[0]} {method} {target} -> {outcome} ({ms:.1f} ms)\n")


class EmulatorServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], app: App, *, verbose: bool = False) -> None:
        self.app = app
        self.verbose = verbose
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, EmulatorHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Close every open keep-alive connection (used on stop)."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def port(self) -> int:
        return int(self.server_address[1])
