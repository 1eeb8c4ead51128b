"""HTTP plumbing: a threaded HTTP/1.1 keep-alive server around :class:`~.app.App`.

Speed matters (the emulator must never be the bottleneck of a benchmark): the request line
and headers are parsed by hand, and every response (status line, headers and body) goes out
in a single ``send`` with Nagle disabled, so keep-alive clients never wait on delayed ACKs.
Latency and faults apply to ``/v1`` requests only; admin endpoints are never delayed,
faulted or rate limited.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .app import API_PREFIX, App
from .core import Response, error_response, reason

MAX_LINE = 65536
MAX_HEADERS = 200
MAX_BODY = 64 * 1024 * 1024
SERVER_NAME = "instasent-emulator"


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class EmulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 300  # idle keep-alive connections are closed after this many seconds
    server: EmulatorServer

    def handle_one_request(self) -> None:
        try:
            self._handle_one()
        except (TimeoutError, ConnectionError, OSError):
            self.close_connection = True
        except _BadRequest as exc:
            self.close_connection = True
            try:
                self._write(error_response(exc.status, exc.message), close=True)
            except OSError:
                pass

    def _readline(self) -> bytes:
        line = self.rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise _BadRequest(431, "Request line or header too long")
        return line

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size_line = self._readline().split(b";", 1)[0].strip()
                try:
                    size = int(size_line, 16)
                except ValueError as exc:
                    raise _BadRequest(400, "Malformed chunked body") from exc
                if size == 0:
                    while self._readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise _BadRequest(413, "Request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length_raw = headers.get("content-length")
        if not length_raw:
            return b""
        try:
            length = int(length_raw)
        except ValueError as exc:
            raise _BadRequest(400, "Invalid Content-Length") from exc
        if length < 0 or length > MAX_BODY:
            raise _BadRequest(413, "Request body too large")
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            raise ConnectionError("client closed the connection mid-body")
        return body

    def _handle_one(self) -> None:
        line = self._readline()
        if not line:
            self.close_connection = True
            return
        if line in (b"\r\n", b"\n"):  # tolerate a stray CRLF between requests
            self.close_connection = False
            return
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise _BadRequest(400, "Malformed request line")
        method, target, version = parts
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            raw = self._readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, sep, value = raw.decode("latin-1").partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        else:
            raise _BadRequest(431, "Too many headers")
        connection = headers.get("connection", "").lower()
        close = connection != "keep-alive" if version == "HTTP/1.0" else connection == "close"
        if headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = self._read_body(headers)
        self.close_connection = close
        srv = self.server
        app = srv.app
        started = time.perf_counter()
        fault = None
        response: Response | None = None
        if target == API_PREFIX or target.startswith((API_PREFIX + "/", API_PREFIX + "?")):
            latency = app.settings.latency_ms
            if latency > 0:
                time.sleep(latency / 1000.0)
            fault = app.faults.roll()
            if fault == "drop_before":
                self._drop(method, target, "drop_before", started)
                return
            if fault in ("500", "502", "503"):
                status = int(fault)
                response = error_response(status, f"Emulated fault: {status} {reason(status)}")
                response.headers.extend(app.rate_headers(method, target, headers))
                response.headers.append(("X-Emulator-Fault", fault))
        if response is None:
            response = app.handle(method, target, headers, body)
        if fault == "drop_after":
            self._drop(method, target, "drop_after", started)
            return
        self._write(response, close)
        if srv.verbose:
            self._log(method, target, str(response.status), started)

    def _drop(self, method: str, target: str, kind: str, started: float) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self.server.verbose:
            self._log(method, target, kind, started)

    def _write(self, response: Response, close: bool) -> None:
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
        self.wfile.write("".join(head).encode("latin-1") + response.body)

    def _log(self, method: str, target: str, outcome: str, started: float) -> None:
        ms = (time.perf_counter() - started) * 1000
        sys.stderr.write(f"{self.client_address[0]} {method} {target} -> {outcome} ({ms:.1f} ms)\n")

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class EmulatorServer(ThreadingHTTPServer):
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
