"""HTTP parsing edge cases (httptools, see docs/adr/0006-emulator-http-layer.md): the answers to
malformed or unusual requests, sent as raw bytes."""

from __future__ import annotations

import re
import socket
from urllib.parse import urlsplit

import pytest

from .conftest import Api

AUTH = b"Authorization: Bearer demo-admin-token\r\n"


def exchange(api: Api, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection; everything the server answers until it closes."""
    parts = urlsplit(api.base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def statuses(data: bytes) -> list[int]:
    """The status of each response in ``data`` (a body is followed directly by the next response)."""
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /v1/ HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
        (b"POST /v1/ HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", 413),
        (b"GET /v1/ HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 201 + b"\r\n", 431),
        (b"GET /v1/ HTTP/1.1\r\nHost: x\r\nX-A: " + b"b" * 70_000 + b"\r\n\r\n", 431),
        (b"POST /v1/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ],
    ids=["bad-content-length", "body-too-large", "too-many-headers", "head-too-large", "bad-chunk"],
)
def test_malformed_requests_get_a_json_error_and_the_connection_is_closed(
    api: Api, request_bytes: bytes, status: int
) -> None:
    data = exchange(api, request_bytes)
    assert statuses(data) == [status]
    assert b"Connection: close" in data and b'{"message":' in data


def test_pipelined_requests_are_answered_in_order_up_to_a_bad_one(api: Api) -> None:
    data = exchange(
        api,
        b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\n\r\n"
        b"\r\n"  # a stray empty line between requests is ignored
        b"GET /v1/ HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n"
        b"NONSENSE\r\n\r\n",
    )
    assert statuses(data) == [200, 200, 400]


def test_http_1_0_keep_alive_and_head(api: Api) -> None:
    data = exchange(
        api,
        b"GET /_emulator/health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        b"HEAD /_emulator/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert statuses(data) == [200, 200]
    assert data.endswith(b"Connection: close\r\n\r\n")  # no body after a HEAD response


def test_expect_100_continue(api: Api) -> None:
    parts = urlsplit(api.base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(b"POST /_emulator/faults HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        assert s.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"{}")
        assert statuses(s.recv(65536)) == [200]
