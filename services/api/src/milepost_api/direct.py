"""Routes whose common requests skip FastAPI's parameter and dependency resolution.

Resolving a hot read's dependencies and parameters (the caller, the page, the window, the
path) costs FastAPI a fifth of the read's CPU (the positions read: 615 → 495 µs a request
without it, bench/api). The endpoint of a :class:`DirectRoute` marked with :func:`direct`
has a handler that reads the request itself: it answers the requests it recognizes (each
parameter in a plain form FastAPI's validators accept and read the same) and returns None,
before doing anything, for every other one, which FastAPI then resolves as usual: every
error, its order (401 before 422) and its envelope stay FastAPI's. The endpoint's signature
still documents the route, so the OpenAPI document does not change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute

F = TypeVar("F", bound=Callable[..., Any])
DirectHandler = Callable[[Request], Awaitable[Response | None]]

_DIRECT_ATTR = "__milepost_direct__"


def direct(handler: DirectHandler) -> Callable[[F], F]:
    """Give an endpoint of a :class:`DirectRoute` the handler for its common requests."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _DIRECT_ATTR, handler)
        return endpoint

    return mark


class DirectRoute(APIRoute):
    """An APIRoute that first offers each request to its endpoint's direct handler."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        resolved = super().get_route_handler()
        handler: DirectHandler | None = getattr(self.endpoint, _DIRECT_ATTR, None)
        if handler is None:
            return resolved

        async def answer(request: Request) -> Response:
            response = await handler(request)
            return await resolved(request) if response is None else response

        return answer
