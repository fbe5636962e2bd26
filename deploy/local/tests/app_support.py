"""How a Milepost process sees what a deployment gives it, shared by the compose and
Kubernetes tests: the settings class each process loads, the settings it loads from exactly
an environment, and the client address an app records for a connection that carries
X-Forwarded-For."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, cast

from starlette.types import Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from milepost_admin.settings import AdminSettings
from milepost_api.settings import ApiSettings
from milepost_common.settings import CommonSettings
from milepost_ingest.settings import IngestSettings
from milepost_worker.settings import WorkerSettings

APPS = ("api", "admin", "ingest")
# The settings class each process (of `make up`, of a pod) loads.
SETTINGS: dict[str, type[CommonSettings]] = {
    "api": ApiSettings,
    "admin": AdminSettings,
    "ingest": IngestSettings,
    "worker": WorkerSettings,
    "worker-webhooks": WorkerSettings,
    "beat": WorkerSettings,
}


def load_settings(
    cls: type[CommonSettings], env: Mapping[str, str], monkeypatch: Any
) -> CommonSettings:
    """The settings the process loads from exactly `env` (nothing of this test process's)."""
    for name in [*os.environ]:
        if name.startswith("MILEPOST_") or name in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("MILEPOST_") or name in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.setenv(name, value)
    return cls(_env_file=None)


async def client_seen_by_app(forwarded_allow_ips: str, peer: str, forwarded_for: str) -> str:
    """The client address an app served as `web.serve` runs it (uvicorn's proxy headers)
    records for a connection from `peer` that carries `X-Forwarded-For: forwarded_for`."""
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["client"][0])

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        return None

    scope = {
        "type": "http",
        "scheme": "http",
        "client": (peer, 40000),
        "headers": [(b"x-forwarded-for", forwarded_for.encode())],
    }
    # uvicorn types its middleware with its own ASGI types; these are the same dicts.
    proxy: Any = ProxyHeadersMiddleware(cast(Any, app), trusted_hosts=forwarded_allow_ips)
    await proxy(scope, receive, send)
    return seen[0]
