"""Exception classes raised by the Instasent client.

Every HTTP error carries the status, the method, the endpoint (the path template, e.g.
``/project/{project}/audience/scroll``, plus the concrete path) and the API's own message.
The token never appears in any of them: messages are built from the response body and the
request path only, and ``redact`` scrubs anything that looks like a bearer token.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from . import endpoints as ep

#: Which plan tier each gated scope needs; used to tell the user what to do next.
SCOPE_TIERS: dict[str, str] = {
    "PROJECT_AUDIENCE_LIST": "a subscription plan that includes audience listing",
    "PROJECT_AUDIENCE_DATA_BASIC": "a subscription plan that includes basic contact data",
    "PROJECT_AUDIENCE_DATA_EVENTS": "a subscription plan that includes audience events",
    "PROJECT_AUDIENCE_DATA_FULL": "a manual grant by Instasent (full contact data / PII)",
    "PROJECT_AGGREGATIONS": "a manual grant by Instasent (aggregations)",
}

_SCOPE_RE = re.compile(r"\b(?:PROJECT|ACCOUNT)_[A-Z_]+\b")
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove bearer tokens and the given secrets from ``text``."""
    text = _BEARER_RE.sub(r"\1***", text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class InstasentError(Exception):
    """Base class of every error this package raises on purpose.

    ``may_have_acted``: whether the server may have applied the request before it failed (an
    attempt timed out or lost its connection after sending, or got a 5xx, or a 2xx that could
    not be read). False when every attempt certainly left it untouched (refused connections,
    429s, 4xx): what tells an ingest "unknown outcome" from "rejected".
    """

    may_have_acted: bool = False


class InstasentConfigError(InstasentError, ValueError):
    """The client or an operator was configured wrongly (caught before any request)."""


class InstasentConnectionError(InstasentError):
    """The request got no HTTP answer: connection refused or dropped, or a timeout."""

    def __init__(self, method: str, endpoint: str, reason: str, *, attempts: int = 1) -> None:
        self.method = method
        self.endpoint = endpoint
        self.reason = reason
        self.attempts = attempts
        super().__init__(f"{method} {endpoint}: no response ({reason}) after {attempts} attempt(s)")


class LongWaitError(InstasentError):
    """The API asked to wait longer than the client's ``long_wait`` threshold (a 429 with a long
    ``Retry-After`` or reset, or a spent budget whose reset is far off): raised instead of
    sleeping, before the request is sent again, so a caller can give its slot back (an Airflow
    operator defers) and resume at ``resume_at`` (Unix time). ``may_have_acted``: an earlier
    attempt of the same request got an answer (or none) that does not rule out the API applied it."""

    may_have_acted = False

    def __init__(self, wait_s: float, *, endpoint_class: str = "", resume_at: float | None = None) -> None:
        import time

        self.wait_s = float(wait_s)
        self.endpoint_class = endpoint_class
        self.resume_at = resume_at if resume_at is not None else time.time() + self.wait_s
        super().__init__(f"the API asks to wait {self.wait_s:.0f} s"
                         + (f" ({endpoint_class} requests)" if endpoint_class else "")
                         + ", longer than the client's long_wait threshold")


class InstasentProtocolError(InstasentError):
    """The API answered 2xx, but with a body that is not a (consistent) result: HTML from a
    proxy, truncated JSON, an empty body, positions that do not add up. Nothing in it counts as
    evidence that an item was accepted (a push) or read (a page of a listing or scroll); the
    request is treated as failed (a rerun is safe)."""

    may_have_acted = True  # a 2xx: the API (or something in front of it) answered

    def __init__(self, method: str, endpoint: str, status: int, problem: str, *,
                 consequence: str = "its items are not counted as accepted") -> None:
        self.method = method
        self.endpoint = endpoint
        self.status = status
        self.problem = problem
        super().__init__(f"{method} {endpoint}: answered {status} but {problem}; {consequence} "
                         "(a proxy or gateway may have answered instead of the API)")


class InstasentHTTPError(InstasentError):
    """The API answered with an error status.

    Attributes:
        status: HTTP status code.
        method: HTTP method.
        endpoint: the endpoint's path template (stable, good for grouping).
        path: the concrete request path (without query string).
        api_message: the API's own message (``message`` / ``error`` of the body).
        body: the decoded JSON body, or the text when it was not JSON.
        attempts: how many attempts were made before giving up.
    """

    def __init__(
        self,
        status: int,
        method: str,
        endpoint: str,
        api_message: str,
        *,
        path: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        attempts: int = 1,
    ) -> None:
        self.status = status
        self.method = method
        self.endpoint = endpoint
        self.path = path or endpoint
        self.api_message = api_message
        self.body = body
        self.headers = dict(headers or {})
        self.attempts = attempts
        super().__init__(self._format())

    def hint(self) -> str:
        """What the user should do next; empty when there is nothing specific to say."""
        return ""

    def _format(self) -> str:
        text = f"HTTP {self.status} on {self.method} {self.path}: {self.api_message or '(no message)'}"
        hint = self.hint()
        if hint:
            text += f" -- {hint}"
        if self.attempts > 1:
            text += f" (after {self.attempts} attempts)"
        return text


class BadRequestError(InstasentHTTPError):
    """400: the request is malformed (not an array, more than 100 items, bad filter...)."""


class AuthenticationError(InstasentHTTPError):
    """401: the token is missing, malformed or revoked."""

    def hint(self) -> str:
        return "check the API token in the connection's password field"


class PermissionDeniedError(InstasentHTTPError):
    """403: the token lacks a scope, the plan does not allow it, or a datasource token
    was used outside its datasource."""

    @property
    def missing_scope(self) -> str | None:
        if isinstance(self.body, Mapping):
            scope = self.body.get(ep.MISSING_SCOPE)
            if isinstance(scope, str):
                return scope
        found = _SCOPE_RE.search(self.api_message or "")
        return found.group(0) if found else None

    def hint(self) -> str:
        scope = self.missing_scope
        if not scope:
            return "the token is not allowed to do this; check its scopes and datasource"
        tier = SCOPE_TIERS.get(scope)
        text = f"grant the token the scope {scope}"
        if tier:
            text += f" (it needs {tier})"
        return text


class NotFoundError(InstasentHTTPError):
    """404: unknown project, datasource, contact or resource (or not visible to the token)."""


class ValidationError(InstasentHTTPError):
    """422: every item of a push failed validation, or a request body was rejected."""


class RateLimitError(InstasentHTTPError):
    """429: the rate limit was exceeded and retries were exhausted."""

    @property
    def retry_after(self) -> float | None:
        from .retry import retry_after_seconds

        return retry_after_seconds(self.headers)


class ServerError(InstasentHTTPError):
    """5xx: the service failed; retried with backoff before this is raised."""


_BY_STATUS: dict[int, type[InstasentHTTPError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: ValidationError,
    429: RateLimitError,
}


def api_message(body: Any) -> str:
    """Extract the API's message from an error body of any of the documented forms."""
    if isinstance(body, str):
        return body.strip()[:500]
    if isinstance(body, Mapping):
        for key in (ep.MESSAGE, ep.ERROR, "error_description", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, Mapping) and isinstance(value.get(ep.MESSAGE), str):
                return str(value[ep.MESSAGE])
        errors = body.get(ep.ERRORS)
        if isinstance(errors, list) and errors:
            return "; ".join(str(e.get(ep.ERROR, e)) if isinstance(e, Mapping) else str(e) for e in errors[:5])
    return ""


def redact_value(value: Any, secrets: tuple[str, ...] = ()) -> Any:
    """``value`` (a decoded JSON body: dicts, lists, strings) with every string redacted."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {redact_value(k, secrets): redact_value(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v, secrets) for v in value]
    return value


def error_for_status(
    status: int,
    method: str,
    endpoint: str,
    body: Any,
    *,
    path: str | None = None,
    headers: Mapping[str, str] | None = None,
    attempts: int = 1,
    secrets: tuple[str, ...] = (),
) -> InstasentHTTPError:
    """Build the exception class that matches ``status``."""
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else InstasentHTTPError)
    message = redact(api_message(body), secrets)
    # a server may echo the request (and its Authorization header) back: keep nothing of the token
    return cls(status, method, endpoint, message, path=path, body=redact_value(body, secrets), headers=headers,
               attempts=attempts)
