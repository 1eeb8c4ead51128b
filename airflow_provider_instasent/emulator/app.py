"""The emulator application: routing, authentication, scopes, rate limits, admin endpoints.

``App`` is independent of the HTTP plumbing (``server.py``): it maps a method, a target
(path and query) , headers and a body to a ``Response``.
"""

from __future__ import annotations

import itertools
import math
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote

from . import ingest, product
from .auth import AuthError, bearer_token, effective_scopes, require_scope
from .core import ApiError, Ctx, Request, Response, Route, Router, error_response, json_response
from .faults import FaultInjector, Settings, SettingsError
from .ratelimit import RateLimiter
from .store import Store
from .validation import parse_datetime

API_PREFIX = "/v1"


def _no_wait() -> None:
    pass

ADMIN_PREFIX = "/_emulator"


def _combined_router() -> Router:
    router = Router()
    router.routes = [*ingest.router.routes, *product.router.routes]
    return router


class App:
    def __init__(self, store: Store, settings: Settings | None = None, queue_delay_ms: float = 0.0) -> None:
        self.store = store
        self.set_queue_delay(queue_delay_ms)
        self.settings = settings or Settings()
        self.faults = FaultInjector(self.settings)
        self.limiter = RateLimiter(self.settings.rate_limit, clock=store.clock.now)
        self.router = _combined_router()
        self._request_ids = itertools.count(1)

    # -- entry points ---------------------------------------------------------------------------
    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, wait: Callable[[], None] = _no_wait
    ) -> Response:
        """Answer one request. ``wait`` sleeps out the emulated latency of an API request: called
        before the request is handled, or, by a route that ``waits_itself`` (the pushes), after
        its validation and before its write, so that the CPU work overlaps the latency the way
        it does on a real server while the write still lands once the latency has passed."""
        path, _, qs = target.partition("?")
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            return self.api(method, path[len(API_PREFIX) :] or "/", qs, headers, body, wait)
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            return self.admin(method, path[len(ADMIN_PREFIX) :] or "/", qs, body)
        return error_response(
            404,
            f"Not found: {path} (the API lives under {API_PREFIX}/, the admin "
            f"endpoints under {ADMIN_PREFIX}/)",
        )

    def endpoint_class(self, method: str, target: str) -> str:
        path = target.partition("?")[0]
        route, _, _ = self.router.match(method, path[len(API_PREFIX) :] or "/")
        return route.endpoint_class if route else "default"

    def rate_headers(self, method: str, target: str, headers: Mapping[str, str]) -> list[tuple[str, str]]:
        """Current rate-limit headers for a request, without spending from the bucket."""
        token = bearer_token(headers.get("authorization")) or "-"
        return self.limiter.take(token, self.endpoint_class(method, target), consume=False)[1]

    def api(
        self,
        method: str,
        path: str,
        qs: str,
        headers: Mapping[str, str],
        body: bytes,
        wait: Callable[[], None] = _no_wait,
    ) -> Response:
        route, params, path_known = self.router.match(method, path)
        if route is None or not route.waits_itself:
            wait()
        token_str = bearer_token(headers.get("authorization"))
        allowed, rl_headers = self.limiter.take(
            token_str or "-", route.endpoint_class if route else "default"
        )
        if not allowed:
            response = error_response(429, "You exceeded the rate limit")
        else:
            request = Request(method, path, parse_qs(qs, keep_blank_values=True), headers, body, wait)
            try:
                response = self._dispatch(route, params, path_known, token_str, request)
            except ApiError as exc:
                response = json_response(exc.status, exc.body())
            except AuthError as exc:
                response = error_response(exc.status, exc.message, **exc.extra)
            except Exception as exc:  # a bug in the emulator: answer 500 and say so on stderr
                traceback.print_exc(file=sys.stderr)
                response = error_response(500, f"Internal emulator error: {type(exc).__name__}: {exc}")
        response.headers.extend(rl_headers)
        response.headers.append(("X-Request-Id", f"emu-{next(self._request_ids)}"))
        response.headers.append(("Date", self.store.clock.http_date()))  # the emulator's clock
        return response

    def _dispatch(
        self,
        route: Route | None,
        params: dict[str, str],
        path_known: bool,
        token_str: str | None,
        request: Request,
    ) -> Response:
        if route is None:
            if path_known:
                raise ApiError(405, f"Method {request.method} not allowed on /v1{request.path}")
            raise ApiError(404, f"Unknown endpoint {request.method} /v1{request.path}")
        if token_str is None:
            raise ApiError(401, "Missing or malformed Authorization header (expected 'Bearer <token>')")
        store = self.store
        token = store.tokens.get(token_str)
        if token is None:
            raise ApiError(401, "Invalid or revoked token")
        params = {k: unquote(v) for k, v in params.items()}
        ps = None
        ds = None
        if "p" in params:
            ps = store.projects.get(params["p"])
            if ps is None or params["p"] not in token.projects:
                raise ApiError(404, f"Project '{params['p']}' not found")
        if "ds" in params and ps is not None:
            ds = ps.resolve_datasource(params["ds"])
            if ds is None:
                raise ApiError(404, f"Datasource '{params['ds']}' not found in project '{ps.config.uid}'")
        if token.kind == "datasource":
            if not route.stream or ds is None or ds.uid != token.datasource:
                raise ApiError(
                    403,
                    "Datasource tokens may only use the /stream and /stats endpoints of their own "
                    f"datasource ('{token.datasource}' in project '{token.projects[0]}')",
                    restriction="datasource-token",
                )
            scopes = frozenset(token.scopes)
            if route.scope and route.scope not in scopes:
                raise ApiError(403, f"Token lacks scope {route.scope}", missingScope=route.scope)
        else:
            scopes = effective_scopes(token, store.fixture.plan)
            if route.scope:
                require_scope(token, store.fixture.plan, route.scope)
        ctx = Ctx(request, store, token, scopes, params, ps, ds)
        return route.handler(ctx)

    # -- admin ------------------------------------------------------------------------------------------
    def admin(self, method: str, path: str, qs: str, body: bytes) -> Response:
        query = parse_qs(qs, keep_blank_values=True)
        project = query.get("project", [None])[-1]
        if project is not None and project not in self.store.projects:
            return error_response(404, f"Project '{project}' not found")
        path = path.rstrip("/") or "/"
        if path == "/state" and method == "GET":
            return json_response(200, self.store.state(project))
        if path == "/reset" and method == "POST":
            self.reset()
            return json_response(200, {"status": "reset", "state": self.store.state()})
        if path == "/clock":
            return self.clock(method, body)
        if path == "/automations" and method == "GET":
            return json_response(200, {"events": self.store.automations(project)})
        if path == "/queue" and method == "GET":
            return json_response(200, self.queue_state())
        if path == "/queue" and method == "POST":
            try:
                changes = Request(method, path, {}, {}, body).json_object()
                unknown = set(changes) - {"delay_ms"}
                if unknown:
                    return error_response(400, f"unknown queue settings {sorted(unknown)}")
                if "delay_ms" in changes:
                    self.set_queue_delay(changes["delay_ms"])
                return json_response(200, self.queue_state())
            except ApiError as exc:
                return json_response(exc.status, exc.body())
            except SettingsError as exc:
                return error_response(400, str(exc))
        if path == "/queue/flush" and method == "POST":
            applied = self.store.queue.flush()
            return json_response(200, {"applied": applied, **self.queue_state()})
        if path == "/faults" and method == "GET":
            return json_response(200, self.settings.as_dict())
        if path == "/faults" and method == "POST":
            try:
                changes = Request(method, path, {}, {}, body).json_object()
                return json_response(200, self.update_settings(changes))
            except ApiError as exc:
                return json_response(exc.status, exc.body())
            except SettingsError as exc:
                return error_response(400, str(exc))
        if path in ("/health", "/"):
            return json_response(200, {"status": "ok", "projects": sorted(self.store.projects)})
        known = {"/state", "/reset", "/automations", "/faults", "/health", "/queue", "/queue/flush", "/clock"}
        if path in known:
            return error_response(405, f"Method {method} not allowed on {ADMIN_PREFIX}{path}")
        return error_response(404, f"Unknown admin endpoint {ADMIN_PREFIX}{path}")

    def reset(self) -> None:
        self.store.reset()  # the clock too: back to real time
        self.limiter.reset()

    def clock(self, method: str, body: bytes) -> Response:
        """``GET``: ``{"now": ISO}``; ``POST {"advance_s": N}`` or ``{"now": ISO}`` moves the clock."""
        clock = self.store.clock
        if method == "POST":
            try:
                change = Request(method, "/clock", {}, {}, body).json_object()
            except ApiError as exc:
                return json_response(exc.status, exc.body())
            if set(change) - {"advance_s", "now"} or len(change) != 1:
                return error_response(400, 'the body must be {"advance_s": seconds} or {"now": "<ISO 8601>"}')
            if "advance_s" in change:
                step = change["advance_s"]
                if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step):
                    return error_response(400, "advance_s must be a number of seconds")
                clock.advance(float(step))
            else:
                at = parse_datetime(change["now"], require_tz=True) if isinstance(change["now"], str) else None
                if at is None:
                    return error_response(400, "now must be an ISO 8601 date-time with a timezone (Z or an offset)")
                clock.set(at)
        elif method != "GET":
            return error_response(405, f"Method {method} not allowed on {ADMIN_PREFIX}/clock")
        return json_response(200, {"now": clock.iso(), "offset_s": round(clock.offset, 3)})

    def set_queue_delay(self, delay_ms: Any) -> None:
        """Queue writes made without ``?_sync`` for ``delay_ms`` (0: apply them at once)."""
        if isinstance(delay_ms, bool) or not isinstance(delay_ms, (int, float)) or not delay_ms >= 0:
            raise SettingsError("queue_delay_ms must be a number >= 0")
        if delay_ms == 0:
            self.store.queue.flush()
        self.store.queue.delay_s = float(delay_ms) / 1000.0

    def queue_state(self) -> dict[str, Any]:
        return {"delay_ms": self.store.queue.delay_s * 1000.0, "pending": self.store.queue.pending()}

    def update_settings(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        old_rate = self.settings.rate_limit
        settings = self.faults.update(changes)
        if "rate_limit" in changes or settings.rate_limit != old_rate:
            self.limiter.configure(settings.rate_limit)
        return settings.as_dict()
