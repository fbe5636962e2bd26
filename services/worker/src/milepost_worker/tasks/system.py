"""``system.heartbeat`` (from beat: it exports the queue and backlog gauges, and its time, which
the alerts watch) and ``system.ping``."""

from __future__ import annotations

import contextlib
import time

from redis import Redis
from redis.exceptions import RedisError

from milepost_common import tasks as names
from milepost_worker import metrics
from milepost_worker.celery_app import celery_app
from milepost_worker.handlers import system
from milepost_worker.runtime import get_runtime
from milepost_worker.settings import get_settings
from milepost_worker.tasks import log


@celery_app.task(name=names.SYSTEM_HEARTBEAT)
def heartbeat() -> None:
    """Export the queue depths, the heartbeat's time (proof that a processing worker consumes
    beat's tasks: ``MilepostWorkerHeartbeatMissing``) and the backlog. Each node's own record,
    which admin's system status lists and its liveness probe reads, its main process writes
    (``health.NodeHeartbeat``)."""
    runtime = get_runtime()
    settings = get_settings()
    # A queue Redis cannot measure keeps its last value.
    with (
        contextlib.suppress(RedisError),
        Redis.from_url(
            settings.redis.url, socket_timeout=settings.redis.socket_timeout_s
        ) as broker,
    ):
        for queue in names.QUEUES:
            metrics.QUEUE_DEPTH.labels(queue).set(int(broker.llen(queue)))
    metrics.HEARTBEAT.set(time.time())
    # After the heartbeat: a database that does not answer must not fail it.
    try:
        export_backlog(runtime.run(system.backlog(runtime.context)))
    except Exception as exc:  # noqa: BLE001 - the gauges keep their last values meanwhile
        log.warning("backlog_not_measured", error=type(exc).__name__)


def export_backlog(backlog: system.Backlog) -> None:
    for status, count in backlog.batches.items():
        metrics.BATCHES.labels(str(status)).set(count)
    metrics.OLDEST_UNPROCESSED.set(backlog.oldest_unprocessed_age_s)
    metrics.PARTITION_DAYS_AHEAD.set(backlog.partition_days_ahead)


@celery_app.task(name=names.SYSTEM_PING)
def ping(nonce: str) -> None:
    """Answer ``milepost-worker-ping``: set its nonce key in the cache Redis."""
    runtime = get_runtime()
    runtime.run(system.answer_ping(runtime.context, nonce))
