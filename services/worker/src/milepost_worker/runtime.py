"""One event loop, one database engine and one Redis client per prefork child.

Created in ``worker_process_init`` (after fork: never share a pool across processes) and
reused by every task the child runs; ``asyncio.run`` per task would bind the pooled
connections to a dead loop.

The worker terminates a child in the middle of a task (broker connection lost with
``worker_cancel_long_running_tasks_on_connection_loss``, cold shutdown, revoke) by SIGTERM,
and billiard's handler raises ``SystemExit`` wherever the child happens to be. Inside a
driver (asyncpg's protocol) that can come out as an unrelated error, e.g. ``ValueError: not
enough values to unpack``: ``Runtime.run`` turns any failure after that signal back into
``SystemExit``, so a task never records an interrupted job as failed (a batch marked
``failed`` is never re-sent) and the child exits; the message is redelivered or the
reconciler re-sends the work.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Coroutine
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from billiard.common import terminate_handler_fired  # type: ignore[attr-defined]
from redis.asyncio import Redis

# Every table mapped, whatever the handlers happen to import: an ORM flush resolves each
# mapped table's foreign keys (ingest_batches.api_key_id needs api_keys).
import milepost_common.domain.models  # noqa: F401
from milepost_common.crypto import SecretBox
from milepost_common.db import Database, create_database
from milepost_common.domain.webhooks.sending import receiver_client
from milepost_common.logging import get_logger
from milepost_worker.settings import WorkerSettings

T = TypeVar("T")

log = get_logger("milepost.worker.runtime")


def new_holder_id() -> str:
    """``host:pid:random``: unique per worker child across every worker group, even where
    containers share a host name or a pid is reused (it fits ``ingest_batches.lease_holder``)."""
    return f"{socket.gethostname()[:96]}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(slots=True)
class WorkerContext:
    """What handlers need: settings, the database, the cache Redis, the secrets box, HTTP,
    and the id this child holds batch leases under."""

    settings: WorkerSettings
    db: Database
    cache: Redis
    box: SecretBox | None  # only where MILEPOST_AUTH__SECRETS_KEY is given (the webhooks group)
    http: httpx.AsyncClient
    holder: str = field(default_factory=new_holder_id)

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.cache.aclose()
        await self.db.dispose()


def build_context(
    settings: WorkerSettings, *, application_name: str = "milepost-worker"
) -> WorkerContext:
    secrets_key = settings.auth.secrets_key
    redis_timeout = settings.redis.socket_timeout_s
    return WorkerContext(
        settings=settings,
        db=create_database(settings.db, application_name=application_name),
        cache=Redis.from_url(
            settings.redis.cache_url,
            socket_timeout=redis_timeout,
            socket_connect_timeout=redis_timeout,
        ),
        box=SecretBox(secrets_key.get_secret_value()) if secrets_key is not None else None,
        http=receiver_client(timeout_s=settings.webhooks.timeout_s),
    )


class Runtime:
    def __init__(self, settings: WorkerSettings) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.context = build_context(settings)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on this child's loop; on interruption (soft time limit) cancel it;
        once the worker has terminated this child, any failure is ``SystemExit``."""
        task = self.loop.create_task(coro)
        try:
            return self.loop.run_until_complete(task)
        except BaseException as exc:
            if not task.done():
                task.cancel()
                with suppress(BaseException):
                    self.loop.run_until_complete(task)
            if terminate_handler_fired() and not isinstance(exc, SystemExit):
                log.warning("task_terminated", error=f"{type(exc).__name__}: {exc}")
                raise SystemExit("terminated by the worker") from exc
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
