"""HTTP plumbing: a threaded HTTP/1.1 keep-alive server around :class:`~.app.App`.

The wire protocol is h11's (``h11.Connection``): it parses request lines, headers,
``Content-Length`` and chunked bodies, tracks keep-alive and ``Connection: close``, and
rejects malformed requests with the right status (answered here as JSON errors). h11 is
small, pure Python, sans-I/O and already installed with Airflow (uvicorn and httpx use it);
the threads and sockets are the standard library's ``socketserver``. See
``docs/adr/0006-emulator-http-layer.md`` for the choice and its measured cost.

Speed matters (the emulator must never be the bottleneck of a benchmark): every response
(status line, headers and body) goes out in a single ``send`` with Nagle disabled, so
keep-alive clients never wait on delayed ACKs. Latency and faults apply to ``/v1`` requests
only; admin endpoints are never delayed, faulted or rate limited.
"""

from __future__ import annotations

import socket
import socketserver
import sys
import threading
import time
from typing import Any

import h11

from .app import API_PREFIX, App
from .core import Response, error_response, reason

MAX_LINE = 65536  # the largest request head (request line + headers) h11 buffers
MAX_HEADERS = 200
MAX_BODY = 64 * 1024 * 1024
RECV_SIZE = 65536
SERVER_NAME = "instasent-emulator"


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Closed(Exception):
    """The client closed the connection (between or in the middle of requests)."""


class EmulatorHandler(socketserver.StreamRequestHandler):
    """One keep-alive connection: read a request with h11, answer it, repeat."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 300  # idle keep-alive connections are closed after this many seconds
    server: EmulatorServer
    _h11: h11.Connection | None = None
    _head_request = False

    def setup(self) -> None:
        super().setup()
        self._h11 = self._new_connection(b"", False)

    @staticmethod
    def _new_connection(data: bytes, closed: bool) -> h11.Connection:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_LINE)
        if data:
            conn.receive_data(data)
        if closed:
            conn.receive_data(b"")
        return conn

    def handle(self) -> None:
        conn = self._h11
        assert conn is not None
        try:
            while self._handle_one(conn):
                conn.start_next_cycle()
                data, closed = conn.trailing_data
                if data[:1] in (b"\r", b"\n"):  # a stray CRLF after the previous request
                    conn = self._h11 = self._new_connection(data.lstrip(b"\r\n"), closed)
        except _Closed:
            pass
        except (h11.RemoteProtocolError, _BadRequest) as exc:
            if isinstance(exc, h11.RemoteProtocolError):
                status, message = exc.error_status_hint, f"Malformed request: {exc}"
            else:
                status, message = exc.status, exc.message
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                try:
                    self._write(error_response(status, message), close=True)
                except (OSError, h11.LocalProtocolError):
                    pass
        except OSError:  # timeouts, resets, broken pipes
            pass

    # -- reading -------------------------------------------------------------------------------
    def _next_event(self, conn: h11.Connection) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = self.connection.recv(RECV_SIZE)
            if data and conn.their_state is h11.IDLE and not conn.trailing_data[0]:
                data = data.lstrip(b"\r\n")  # RFC 9112 2.2: ignore empty lines before a request
                if not data:
                    continue
            conn.receive_data(data)

    def _read_request(self, conn: h11.Connection) -> tuple[str, str, dict[str, str], bytes]:
        event = self._next_event(conn)
        if isinstance(event, h11.ConnectionClosed):
            raise _Closed
        assert isinstance(event, h11.Request)
        if len(event.headers) > MAX_HEADERS:
            raise _BadRequest(431, "Too many headers")
        if len(event.target) + sum(len(n) + len(v) for n, v in event.headers) > MAX_LINE:
            raise _BadRequest(431, "Request head too large")
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in event.headers}
        length = headers.get("content-length")
        if length is not None and int(length) > MAX_BODY:  # h11 has checked it is all digits
            raise _BadRequest(413, "Request body too large")
        if conn.they_are_waiting_for_100_continue:
            self.connection.sendall(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        chunks: list[bytes] = []
        total = 0
        while True:
            part = self._next_event(conn)
            if isinstance(part, h11.EndOfMessage):
                break
            if isinstance(part, h11.ConnectionClosed):
                raise _Closed
            total += len(part.data)
            if total > MAX_BODY:
                raise _BadRequest(413, "Request body too large")
            chunks.append(part.data)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return event.method.decode("latin-1"), event.target.decode("latin-1"), headers, body

    # -- one request -----------------------------------------------------------------------------
    def _handle_one(self, conn: h11.Connection) -> bool:
        """Answer one request; ``False`` when the connection must then be closed."""
        method, target, headers, body = self._read_request(conn)
        self._head_request = method == "HEAD"
        close = conn.their_state is not h11.DONE  # HTTP/1.0, or ``Connection: close``
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
                return False
            if fault in ("500", "502", "503"):
                status = int(fault)
                response = error_response(status, f"Emulated fault: {status} {reason(status)}")
                response.headers.extend(app.rate_headers(method, target, headers))
                response.headers.append(("X-Emulator-Fault", fault))
        if response is None:
            response = app.handle(method, target, headers, body)
        if fault == "drop_after":
            self._drop(method, target, "drop_after", started)
            return False
        self._write(response, close)
        if srv.verbose:
            self._log(method, target, str(response.status), started)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    def _drop(self, method: str, target: str, kind: str, started: float) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self.server.verbose:
            self._log(method, target, kind, started)

    # -- writing ---------------------------------------------------------------------------------
    def _write(self, response: Response, close: bool) -> None:
        """Send ``response`` in one write (head and body together)."""
        # Outside a request cycle (an error before any request was read) a fresh h11
        # connection serialises the response: h11 lets a server answer from its idle state.
        conn = self._h11 or h11.Connection(h11.SERVER)
        body = b"" if self._head_request else response.body
        headers = [
            ("Server", SERVER_NAME),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(response.body))),
            *response.headers,
        ]
        if close:
            headers.append(("Connection", "close"))
        head = conn.send(
            h11.Response(status_code=response.status, headers=headers, reason=reason(response.status))
        )
        parts = [head or b""]
        if body:
            parts.extend(conn.send_with_data_passthrough(h11.Data(data=body)) or ())
        parts.append(conn.send(h11.EndOfMessage()) or b"")
        self.wfile.write(b"".join(parts))

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
