"""Thin Celery tasks: decode arguments, run the async handler, retry or record the failure."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from milepost_common import tasks as names
from milepost_common.errors import TransientError
from milepost_common.logging import get_logger
from milepost_worker import metrics
from milepost_worker.settings import get_settings

log = get_logger("milepost.worker.tasks")

# SQLSTATE classes worth retrying: connection, deadlock/serialization, shutdown, lock timeout.
_TRANSIENT_SQLSTATES = ("08", "40", "57", "55P03", "53")


def is_transient(exc: BaseException) -> bool:
    """Database or broker unavailable, a deadlock, a timeout: worth a retry."""
    if isinstance(
        exc,
        TransientError
        | OperationalError
        | InterfaceError
        | PoolTimeoutError
        | OSError
        | asyncio.TimeoutError
        | RedisConnectionError
        | RedisTimeoutError
        | SoftTimeLimitExceeded,
    ):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        state = str(getattr(exc.orig, "sqlstate", "") or getattr(exc.orig, "pgcode", "") or "")
        return state.startswith(_TRANSIENT_SQLSTATES)
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and is_transient(cause)


def failure_text(exc: BaseException) -> str:
    """Why a task's work failed, as its record keeps it for the owner's clients and operators
    (a batch's ``last_error``): the error's kind and, from the database, its own message
    without the statement (SQLAlchemy's text adds the SQL, a schema's insides); the worker's
    log keeps the traceback."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc).__name__}: {str(exc.orig).splitlines()[0]}"
    return f"{type(exc).__name__}: {exc}"


def retry_delay_s(retries: int) -> float:
    """Exponential backoff with jitter, capped (always far below the visibility timeout)."""
    w = get_settings().worker
    ceiling: float = min(w.retry_backoff_max_s, w.retry_backoff_base_s * 2.0**retries)
    return ceiling * (0.5 + 0.5 * random.random())  # noqa: S311 - jitter


def send(name: str, *args: Any) -> bool:
    """Send a follow-up task by name with ``expires``; False (logged) if the broker is down:
    the work is durable in Postgres and a sweep sends it again."""
    from milepost_worker.celery_app import celery_app

    try:
        celery_app.send_task(
            name,
            args=list(args),
            queue=names.TASK_QUEUES[name],
            expires=get_settings().celery.task_expires_s,
            retry=False,
        )
    except Exception as exc:  # noqa: BLE001 - any broker failure leaves it to the sweep
        log.warning("send_failed", task=name, error=type(exc).__name__)
        return False
    return True


@contextmanager
def observed(task: str) -> Iterator[None]:
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    finally:
        metrics.TASKS.labels(task, outcome).inc()
        metrics.TASK_DURATION.labels(task).observe(time.perf_counter() - started)
