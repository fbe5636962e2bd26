"""One event loop, one database engine and one Redis client per prefork child.

Created in ``worker_process_init`` (after fork: never share a pool across processes) and
reused by every task the child runs; ``asyncio.run`` per task would bind the pooled
connections to a dead loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from redis.asyncio import Redis

from milepost_common.crypto import SecretBox
from milepost_common.db import Database, create_database
from milepost_worker.settings import WorkerSettings

T = TypeVar("T")


@dataclass(slots=True)
class WorkerContext:
    """What handlers need: settings, the database, the cache Redis, the secrets box, HTTP."""

    settings: WorkerSettings
    db: Database
    cache: Redis
    box: SecretBox
    http: httpx.AsyncClient

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.cache.aclose()
        await self.db.dispose()


def build_context(
    settings: WorkerSettings, *, application_name: str = "milepost-worker"
) -> WorkerContext:
    secrets_key = settings.auth.secrets_key
    if secrets_key is None:  # settings validation fills it or refuses to start
        raise RuntimeError("MILEPOST_AUTH__SECRETS_KEY is not set")
    redis_timeout = settings.redis.socket_timeout_s
    return WorkerContext(
        settings=settings,
        db=create_database(settings.db, application_name=application_name),
        cache=Redis.from_url(
            settings.redis.cache_url,
            socket_timeout=redis_timeout,
            socket_connect_timeout=redis_timeout,
        ),
        box=SecretBox(secrets_key.get_secret_value()),
        http=httpx.AsyncClient(
            timeout=settings.worker.webhook_timeout_s, follow_redirects=False, trust_env=False
        ),
    )


class Runtime:
    def __init__(self, settings: WorkerSettings) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.context = build_context(settings)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on this child's loop; on interruption (soft time limit) cancel it."""
        task = self.loop.create_task(coro)
        try:
            return self.loop.run_until_complete(task)
        except BaseException:
            if not task.done():
                task.cancel()
                with suppress(BaseException):
                    self.loop.run_until_complete(task)
            raise

    def close(self) -> None:
        with suppress(Exception):
            self.loop.run_until_complete(self.context.aclose())
        self.loop.close()


_runtime: Runtime | None = None


def init_runtime(settings: WorkerSettings) -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(settings)
    return _runtime


def get_runtime() -> Runtime:
    """This process's runtime (created on first use outside a prefork child, e.g. solo pool)."""
    if _runtime is None:
        from milepost_worker.settings import get_settings

        return init_runtime(get_settings())
    return _runtime


def close_runtime() -> None:
    global _runtime
    if _runtime is not None:
        _runtime.close()
        _runtime = None
