"""HTTP plumbing: keep-alive, one write per response, Connection: close, chunked bodies."""

from __future__ import annotations

import http.client
import socket
from urllib.parse import urlsplit

from airflow_provider_instasent.emulator.core import Response
from airflow_provider_instasent.emulator.server import EmulatorHandler

from .conftest import Api

AUTH = {"Authorization": "Bearer demo-admin-token"}


def connect(api: Api) -> http.client.HTTPConnection:
    parts = urlsplit(api.base_url)
    return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)


def test_keep_alive_reuses_one_connection(api: Api) -> None:
    conn = connect(api)
    conn.request("GET", "/v1/", headers=AUTH)
    first = conn.getresponse()
    first.read()
    sock = conn.sock
    for _ in range(5):
        conn.request("GET", "/v1/project/demo", headers=AUTH)
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("Content-Type") == "application/json"
        r.read()
        assert conn.sock is sock
    conn.close()


def test_response_goes_out_in_one_write_without_nagle() -> None:
    assert EmulatorHandler.disable_nagle_algorithm is True
    assert EmulatorHandler.protocol_version == "HTTP/1.1"
    writes: list[bytes] = []

    class Recorder:
        def write(self, data: bytes) -> int:
            writes.append(data)
            return len(data)

    handler = object.__new__(EmulatorHandler)
    handler.wfile = Recorder()  # type: ignore[assignment]
    handler._write(Response(202, b'{"ok":true}', [("X-RateLimit-Limit", "60")]), close=False)
    assert len(writes) == 1
    head, _, body = writes[0].partition(b"\r\n\r\n")
    assert (
        head.startswith(b"HTTP/1.1 202 Accepted") and b"Content-Length: 11" in head and body == b'{"ok":true}'
    )


def test_connection_close_and_http_1_0(api: Api) -> None:
    parts = urlsplit(api.base_url)
    for request in (
        b"GET /v1/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer demo-admin-token\r\nConnection: close\r\n\r\n",
        b"GET /v1/ HTTP/1.0\r\nAuthorization: Bearer demo-admin-token\r\n\r\n",
    ):
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
            s.sendall(request)
            data = b""
            while chunk := s.recv(65536):  # the server closes the connection after the response
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in data


def test_chunked_request_body(api: Api) -> None:
    conn = connect(api)
    body = b'[{"_user_id": "chunky"}]'
    conn.putrequest("POST", "/v1/project/demo/datasource/dsapi/stream/contacts")
    conn.putheader("Authorization", "Bearer demo-admin-token")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    r = conn.getresponse()
    assert r.status == 202, r.read()
    r.read()
    conn.close()
    assert api.contact("chunky").status_code == 200


def test_malformed_request_line_is_400(api: Api) -> None:
    parts = urlsplit(api.base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(b"NONSENSE\r\n\r\n")
        data = s.recv(65536)
    assert data.startswith(b"HTTP/1.1 400")
