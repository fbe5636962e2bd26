"""Routes whose common requests skip FastAPI's parameter and dependency resolution and,
when the process is not traced, its router too.

Resolving a hot read's dependencies and parameters (the caller, the page, the window, the
path) costs FastAPI a fifth of the read's CPU (the positions read: 615 → 495 µs a request
without it, bench/api). The endpoint of a :class:`DirectRoute` marked with :func:`direct`
has a handler that reads the request itself: it answers the requests it recognizes (each
parameter in a plain form FastAPI's validators accept and read the same) and returns None,
before doing anything, for every other one, which FastAPI then resolves as usual: every
error, its order (401 before 422) and its envelope stay FastAPI's. The endpoint's signature
still documents the route, so the OpenAPI document does not change.

Reaching the route costs FastAPI as much again: matching the path through its nested
included routers and five ASGI layers between the edge and the endpoint (the latest
positions: 236 → 180 µs a request in-process without them). :class:`DirectDispatch`, the
innermost middleware, matches the direct routes' paths itself and offers them their requests
first. It records the route as the router would (``route``, ``endpoint``, ``path_params``
and the route template the access log and metrics use) and renders an error the handler
raises with the app's own exception handlers. It matches among the direct routes only, so a
direct route's path must be one no earlier route matches (the tests that compare each
handler's answers with FastAPI's would show a shadowed one). A traced process keeps
FastAPI's router (its spans are named from the route the router selects), where
:class:`DirectRoute` still offers each request to the direct handler.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.convertors import Convertor
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from milepost_common.web.middleware import ROUTE_TEMPLATE

F = TypeVar("F", bound=Callable[..., Any])
DirectHandler = Callable[[Request], Awaitable[Response | None]]

_DIRECT_ATTR = "__milepost_direct__"
# Set on a request DirectDispatch offered and its handler declined: not offered twice.
_DECLINED = "milepost.direct_declined"
# A UUID as hyphenated hex digits of either case, a form FastAPI reads as uuid.UUID does.
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


def direct(handler: DirectHandler) -> Callable[[F], F]:
    """Give an endpoint of a :class:`DirectRoute` the handler for its common requests."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _DIRECT_ATTR, handler)
        return endpoint

    return mark


def _handler_of(route: object) -> DirectHandler | None:
    return getattr(getattr(route, "endpoint", None), _DIRECT_ATTR, None)


class DirectRoute(APIRoute):
    """An APIRoute that first offers each request to its endpoint's direct handler."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        resolved = super().get_route_handler()
        handler = _handler_of(self)
        if handler is None:
            return resolved

        async def answer(request: Request) -> Response:
            response = None if request.scope.get(_DECLINED) else await handler(request)
            return await resolved(request) if response is None else response

        return answer


@dataclass(frozen=True, slots=True)
class _Target:
    route: APIRoute
    handler: DirectHandler
    template: str
    pattern: re.Pattern[str]
    convertors: dict[str, Convertor[Any]]


class DirectDispatch:
    """Innermost middleware: a GET for a direct route goes to its handler first, and on to
    FastAPI only when the handler declines it."""

    def __init__(self, app: ASGIApp, *, fastapi: FastAPI) -> None:
        self.app = app
        # Built with the middleware stack, on the first request: every route is known.
        self.exception_handlers = fastapi.exception_handlers
        self.by_path: dict[str, _Target] = {}
        self.patterned: list[_Target] = []
        for context in iter_route_contexts(fastapi.routes):
            route, template = context.original_route, context.path
            handler = _handler_of(route)
            if handler is None or template is None or not isinstance(route, APIRoute):
                continue
            if "GET" not in (route.methods or ()):
                continue
            pattern, _, convertors = compile_path(template)
            target = _Target(route, handler, template, pattern, convertors)
            if convertors:
                self.patterned.append(target)
            else:
                self.by_path[template] = target

    def _match(self, path: str) -> tuple[_Target, dict[str, Any]] | None:
        target = self.by_path.get(path)
        if target is not None:
            return target, {}
        for target in self.patterned:
            found = target.pattern.match(path)
            if found is not None:
                params = found.groupdict()
                return target, {k: target.convertors[k].convert(v) for k, v in params.items()}
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Under a root path the router matches a shortened path: leave those to it.
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        matched = self._match(scope["path"])
        if matched is None:
            await self.app(scope, receive, send)
            return
        target, params = matched
        scope["route"] = target.route
        scope["endpoint"] = target.route.endpoint
        scope["path_params"] = params
        scope[ROUTE_TEMPLATE] = target.template
        request = Request(scope, receive)
        try:
            response = await target.handler(request)
        except Exception as exc:
            # Answered as FastAPI's exception middleware would, with the app's handler for
            # the error's class; raised on when none is registered (a 500, as there).
            handler = self._handler_for(exc)
            if handler is None:
                raise
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
        if response is None:
            scope[_DECLINED] = True
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> Callable[..., Any] | None:
        for kind in type(exc).__mro__:
            handler = self.exception_handlers.get(kind)
            if handler is not None:
                return handler
        return None
