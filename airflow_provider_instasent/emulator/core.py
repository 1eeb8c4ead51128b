"""Request, response, error and route types shared by the API handlers."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from .fixture import TokenConfig
    from .store import DatasourceState, ProjectState, Store

Headers = list[tuple[str, str]]
_TRUE = frozenset({"", "1", "true", "yes", "on"})


class ApiError(Exception):
    """An error answered as JSON ``{"message": ..., **extra}`` with ``status``."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"message": self.message, **self.extra}


@dataclass
class Request:
    method: str
    path: str  # without the query string and without the /v1 prefix
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-cased names
    body: bytes = b""
    #: Sleeps out what is left of the emulated latency (the server's; a no-op without one).
    wait: Callable[[], None] = field(default=lambda: None, repr=False)
    _json: Any = field(default=None, init=False, repr=False)
    _parsed: bool = field(default=False, init=False, repr=False)

    def json(self, *, required: bool = True) -> Any:
        if not self._parsed:
            self._parsed = True
            if not self.body.strip():
                if required:
                    raise ApiError(400, "Request body must be JSON")
                self._json = None
            else:
                try:
                    self._json = orjson.loads(self.body)
                except orjson.JSONDecodeError as exc:
                    raise ApiError(400, f"Invalid JSON body: {exc}") from exc
        return self._json

    def json_object(self) -> dict[str, Any]:
        data = self.json(required=False)
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ApiError(400, "Body should be a JSON object")
        return data

    def flag(self, name: str) -> bool:
        """A bare query flag (``?_dryRun``), also ``=1``/``=true``; ``=0``/``=false`` is off."""
        values = self.query.get(name)
        if not values:
            return False
        return values[-1].strip().lower() in _TRUE

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass
class Response:
    status: int
    body: bytes
    headers: Headers = field(default_factory=list)


def json_response(status: int, payload: Any, headers: Headers | None = None) -> Response:
    return Response(status, orjson.dumps(payload), headers or [])


def error_response(status: int, message: str, **extra: Any) -> Response:
    return json_response(status, {"message": message, **extra})


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


@dataclass
class Ctx:
    """Everything a handler needs: the request, the store and the authorised caller."""

    req: Request
    store: Store
    token: TokenConfig
    scopes: frozenset[str]
    params: dict[str, str]
    project: ProjectState | None = None
    ds: DatasourceState | None = None

    @property
    def ps(self) -> ProjectState:
        assert self.project is not None
        return self.project

    @property
    def datasource(self) -> DatasourceState:
        assert self.ds is not None
        return self.ds


Handler = Callable[[Ctx], Response]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    regex: re.Pattern[str]
    handler: Handler
    scope: str | None
    endpoint_class: str
    stream: bool  # usable by a datasource token on its own datasource
    any_project_token: bool = False  # no scope needed beyond access to the project
    # The handler validates during the emulated latency and calls ``Request.wait`` before it
    # writes (the push endpoints); other routes are handled once the latency has passed.
    waits_itself: bool = False


def compile_template(template: str) -> re.Pattern[str]:
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return re.compile("^" + pattern + "/?$")


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(
        self,
        method: str,
        template: str,
        scope: str | None = None,
        *,
        endpoint_class: str = "default",
        stream: bool = False,
        any_project_token: bool = False,
        waits_itself: bool = False,
    ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.routes.append(
                Route(
                    method,
                    template,
                    compile_template(template),
                    fn,
                    scope,
                    endpoint_class,
                    stream,
                    any_project_token,
                    waits_itself,
                )
            )
            return fn

        return deco

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """``(route, params, path_known)``; ``path_known`` tells a 405 from a 404."""
        path_known = False
        for r in self.routes:
            m = r.regex.match(path)
            if m is None:
                continue
            if r.method == method:
                return r, m.groupdict(), True
            path_known = True
        return None, {}, path_known
