"""Helpers the api's tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.users.models import User

Bearer = Callable[..., dict[str, str]]


@dataclass
class Team:
    org: Organization
    owner: User
    manager: User
    viewer: User


def error_code(response: httpx.Response) -> Any:
    return response.json()["error"]["code"]


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in this event loop; yields the
    base URL. Real sockets: for WebSockets, webhooks and back-pressure."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, lifespan="off", ws="websockets-sansio"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        done, _ = await asyncio.wait([task], timeout=5)
        if not done:
            server.force_exit = True
            task.cancel()
            await asyncio.wait([task], timeout=5)
