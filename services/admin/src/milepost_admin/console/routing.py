"""Console routes know they are the console's: their errors render as pages, not JSON."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

_MARK = "milepost.console"


class ConsoleRoute(APIRoute):
    """Marks the request before anything of the route runs (its dependencies included), so
    the app's error handler answers with an HTML page instead of the JSON envelope."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def marked(request: Request) -> Response:
            request.scope[_MARK] = True
            return await handler(request)

        return marked


def is_console(request: Request) -> bool:
    """Whether the request was routed to a console page."""
    return bool(request.scope.get(_MARK))
