"""The client's transport layer: one job, sending one request to the Instasent API.

``Transport`` owns the pooled ``requests.Session`` (shared by every call and every
thread), the token, the timeouts, pacing by ``RateLimiter``, retries by
``RetryPolicy`` (on tenacity), error mapping and request counters
(``ClientStats``). ``Transport.call`` is the one way a request is sent; the paging
loop (``paging``) and the endpoint methods (``client``) are built on it. It knows
nothing of Airflow, nor of any endpoint but the one it is given.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Self
from urllib.parse import quote, urlencode

import orjson
import requests
import tenacity
import urllib3
from requests.adapters import HTTPAdapter

from . import endpoints as ep
from .endpoints import Endpoint
from .errors import (
    InstasentConfigError,
    InstasentConnectionError,
    InstasentError,
    LongWaitError,
    error_for_status,
    redact,
)
from .models import ApiResponse
from .ratelimit import RateLimiter
from .retry import Outcome, RetryPolicy

log = logging.getLogger(__name__)

Timeout = float | tuple[float, float]
FLAG = object()  # a bare query flag such as ``?_dryRun``


def _encode_query(params: Mapping[str, Any] | None) -> str:
    if not params:
        return ""
    parts: list[str] = []
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        if value is FLAG:
            parts.append(quote(key, safe="_"))
        elif isinstance(value, bool):
            pairs.append((key, "true" if value else "false"))
        elif isinstance(value, (list, tuple)):
            pairs.append((key, ",".join(str(v) for v in value)))
        else:
            pairs.append((key, str(value)))
    if pairs:
        parts.append(urlencode(pairs))
    return "?" + "&".join(parts) if parts else ""


class ClientStats:
    """Thread-safe request counters (for logs, reports and benchmarks)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0
        self.statuses: Counter[int] = Counter()
        self.no_response = 0
        self.bytes_sent = 0
        self.rate_limit_wait_s = 0.0  # slept before retrying a 429 (pacing waits: RateLimiter.waited_s)

    def record(self, status: int | None, sent: int, retry: bool) -> None:
        with self._lock:
            self.requests += 1
            self.bytes_sent += sent
            if retry:
                self.retries += 1
            if status is None:
                self.no_response += 1
            else:
                self.statuses[status] += 1

    def record_wait(self, seconds: float) -> None:
        with self._lock:
            self.rate_limit_wait_s += seconds

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "statuses": dict(self.statuses),
                "no_response": self.no_response,
                "bytes_sent": self.bytes_sent,
                "rate_limit_wait_s": self.rate_limit_wait_s,
            }


class Transport:
    """The HTTP layer of ``InstasentClient`` (its base class): the session, the
    token, pacing, retries, error mapping and ``ClientStats``, and ``call``.

    The constructor's arguments are documented on ``InstasentClient``.
    """

    def __init__(
        self,
        *,
        token: str,
        project: str | None = None,
        datasource: str = ep.DEFAULT_DATASOURCE,
        base_url: str = ep.DEFAULT_BASE_URL,
        timeout: Timeout = (10.0, 60.0),
        max_retries: int = 5,
        max_retry_time: float = 600.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        verify: bool | str = True,
        pool_size: int = 16,
        pace: bool = True,
        user_agent: str | None = None,
        session: requests.Session | None = None,
        retry_policy: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
        request_deadline: float | None = None,
        long_wait: float | None = None,
    ) -> None:
        if not token or not isinstance(token, str):
            raise InstasentConfigError("token is required (a non-empty string)")
        if max_retries < 0:
            raise InstasentConfigError("max_retries must be >= 0")
        self._token = token
        self.project = project
        self.datasource = datasource or ep.DEFAULT_DATASOURCE
        self.base_url = base_url.rstrip("/")
        if self.base_url.endswith(ep.API_PREFIX):
            self.base_url = self.base_url[: -len(ep.API_PREFIX)]
        if not self.base_url.startswith(("http://", "https://")):
            raise InstasentConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.timeout: Timeout = timeout
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self.request_deadline = request_deadline if request_deadline is not None else connect + 2 * read
        self.retry = retry_policy or RetryPolicy(
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            max_total=max_retry_time,
            long_wait=long_wait,
        )
        self.long_wait = long_wait
        self.rate_limiter = rate_limiter if rate_limiter is not None else RateLimiter()
        self.pace = pace
        self.stats = ClientStats()
        #: the last response's ``Date`` header and the local time it arrived (read by ``server_time``)
        self._server_date: tuple[str, float] | None = None
        self._own_session = session is None
        self.session = session or requests.Session()
        self.pool_size = 0
        self.reserve_connections(pool_size)
        if self._own_session:
            # requests re-reads proxy and CA-bundle variables from the environment on every
            # request (a measurable share of a scroll's CPU: docs/performance.md). Read them once,
            # here, and switch that off.
            env_ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            self.session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
            self.session.trust_env = False
            if verify is True and env_ca:
                verify = env_ca
        self.session.verify = verify
        from .. import __version__

        self.session.headers.update(
            {
                ep.H_AUTHORIZATION: f"Bearer {token}",
                ep.H_ACCEPT: ep.JSON_MEDIA_TYPE,
                ep.H_USER_AGENT: user_agent or f"airflow-provider-instasent/{__version__}",
            }
        )

    def reserve_connections(self, n: int) -> None:
        """Keep at least ``n`` connections alive, one per request in flight (the engines call this
        with their ``max_in_flight``; a smaller pool would open and drop connections)."""
        n = max(1, int(n))
        if n <= self.pool_size:
            return
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=n, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.pool_size = n

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError(f"{type(self).__name__} is not picklable (it holds a token and a session)")

    # -- the server's clock ------------------------------------------------------------------
    def server_time(self) -> datetime.datetime | None:
        """The API server's current time (UTC): the ``Date`` header of the last response plus
        the local time elapsed since it arrived (1 s resolution), or None before any response
        carrying one. Incremental exports keep their watermarks in server time, so a wrong
        local clock cannot skip changes."""
        seen = self._server_date
        if seen is None:
            return None
        try:
            date = email.utils.parsedate_to_datetime(seen[0])
        except (TypeError, ValueError):
            return None
        if date.tzinfo is None:
            date = date.replace(tzinfo=datetime.UTC)
        return date.astimezone(datetime.UTC) + datetime.timedelta(seconds=time.time() - seen[1])

    # -- requests -------------------------------------------------------------------------
    def _path(self, endpoint: Endpoint, params: Mapping[str, Any]) -> str:
        values: dict[str, str] = {}
        for name, value in params.items():
            values[name] = quote(str(value), safe="")
        if "{project}" in endpoint.path and "project" not in values:
            if not self.project:
                raise InstasentConfigError(
                    f"{endpoint.name} needs a project: pass project=... to InstasentClient or the call"
                )
            values["project"] = quote(self.project, safe="")
        if "{datasource}" in endpoint.path and "datasource" not in values:
            values["datasource"] = quote(self.datasource, safe="")
        try:
            return endpoint.path.format(**values)
        except KeyError as missing:
            raise InstasentConfigError(f"{endpoint.name} needs {missing}") from None

    def call(
        self,
        endpoint: Endpoint,
        *,
        path_params: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
        json: Any = None,
        body: bytes | None = None,
        accept_statuses: Iterable[int] = (),
        decode: bool = True,
    ) -> ApiResponse:
        """Send one request to ``endpoint`` with pacing, retries and error mapping.

        ``path_params`` fill the path template (``project``/``datasource`` default to the
        client's). ``json`` is encoded with orjson; ``body`` sends pre-encoded JSON bytes.
        Statuses in ``accept_statuses`` are returned instead of raised. With
        ``decode=False`` a returned response's ``data`` is the body's bytes, not decoded
        (error responses are decoded as usual, for the exception).
        """
        given = {k: v for k, v in (path_params or {}).items() if v is not None and v != ""}  # 0 is an index
        path = ep.API_PREFIX + self._path(endpoint, given)
        if path.endswith("/") and len(path) > len(ep.API_PREFIX) + 1:
            path = path.rstrip("/")
        url = self.base_url + path + _encode_query(query)
        payload = body if body is not None else (orjson.dumps(json) if json is not None else None)
        headers = {ep.H_CONTENT_TYPE: ep.JSON_MEDIA_TYPE} if payload is not None else None
        accepted = frozenset(accept_statuses)
        sent = len(payload or b"")
        attempts = 0
        acted = False  # an attempt reached the server and got no answer that rules out acting

        def attempt() -> Outcome:
            nonlocal attempts, acted
            retry = attempts > 0
            attempts += 1
            if self.pace:
                self.rate_limiter.acquire(endpoint.endpoint_class, max_wait=self.long_wait)
            started = time.monotonic()
            try:
                response = self.session.request(
                    endpoint.method, url, data=payload, headers=headers, timeout=self.timeout, stream=True
                )
                _read_body(response, started + self.request_deadline)
            except (requests.ConnectionError, requests.Timeout) as exc:
                self.stats.record(None, sent, retry)
                connected = not isinstance(exc, requests.ConnectTimeout) and not _never_connected(exc)
                acted = acted or connected
                return Outcome(None, failure=exc, connected=connected, refused=_refused(exc))
            status = response.status_code
            acted = acted or status >= 500  # a gateway's 5xx can come after the API applied the request
            self.stats.record(status, sent, retry)
            date = response.headers.get(ep.H_DATE)
            if date:
                self._server_date = (date, time.time())
            if self.pace:
                self.rate_limiter.update(endpoint.endpoint_class, status, response.headers)
            ok = status < 400 or status in accepted
            data = response.content if ok and not decode else _decode(response)
            return Outcome(status, response.headers, data, ok)

        def log_retry(state: tenacity.RetryCallState) -> None:
            got: Outcome = state.outcome.result()  # type: ignore[union-attr]
            if got.status == 429 and state.next_action:
                self.stats.record_wait(state.next_action.sleep)
            log.warning(
                "Instasent %s %s: %s; retry %d/%d in %.2fs",
                endpoint.method,
                path,
                f"HTTP {got.status}" if got.status is not None else type(got.failure).__name__,
                state.attempt_number,
                self.retry.max_retries,
                state.next_action.sleep if state.next_action else 0.0,
            )

        try:
            got = self.retry.run(attempt, idempotent=endpoint.idempotent, before_sleep=log_retry)
        except LongWaitError as exc:  # an earlier attempt of this request may have been applied
            exc.may_have_acted = acted
            raise
        if got.ok:
            assert got.status is not None
            return ApiResponse(got.status, got.data, got.headers)
        if got.failure is not None:
            reason = redact(type(got.failure).__name__ + ": " + str(got.failure), (self._token,))
            if got.refused:
                reason = f"nothing is listening at {self.base_url} (connection refused); is the base URL right?"
            error: InstasentError = InstasentConnectionError(endpoint.method, path, reason, attempts=attempts)
        else:
            error = error_for_status(
                got.status or 0,
                endpoint.method,
                endpoint.path,
                got.data,
                path=path,
                headers=got.headers,
                attempts=attempts,
                secrets=(self._token,),
            )
        error.may_have_acted = acted
        raise error from None


def decode_content(content: bytes) -> Any:
    """What ``_decode`` returns for a response with this body."""
    if not content:
        return None
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return content.decode("utf-8", errors="replace")


def _decode(response: requests.Response) -> Any:
    content = response.content
    if not content:
        return None
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return response.text


def _read_body(response: requests.Response, deadline: float) -> None:
    """Read the whole body by the ``deadline`` (a trickling server is cut off, not waited for)."""
    raw = response.raw
    if raw is None or not hasattr(raw, "read1"):  # a response built in memory: its content is there
        return
    chunks: list[bytes] = []
    try:
        while True:
            chunk = raw.read1(1 << 16, decode_content=True)  # returns what arrived, at once
            if not chunk:
                break
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise requests.Timeout(f"the answer did not arrive whole within the request deadline "
                                       f"({len(b''.join(chunks))} bytes so far)")
    except requests.Timeout:
        response.close()
        raise
    except urllib3.exceptions.ReadTimeoutError as exc:
        response.close()
        raise requests.ReadTimeout(exc) from exc
    except (urllib3.exceptions.ProtocolError, OSError) as exc:
        response.close()
        raise requests.ConnectionError(exc) from exc
    response._content = b"".join(chunks)
    response._content_consumed = True  # type: ignore[attr-defined]
    raw.release_conn()  # back to the pool for the next request


def _refused(exc: Exception) -> bool:
    """True when the server's address refused the connection (no process listening there)."""
    text = repr(exc)
    return "Connection refused" in text or "[Errno 111]" in text or "ECONNREFUSED" in text


def _never_connected(exc: Exception) -> bool:
    """True when the connection was refused/unresolvable, so the request was never sent."""
    text = repr(exc)
    return "NewConnectionError" in text or "Connection refused" in text or "NameResolutionError" in text
