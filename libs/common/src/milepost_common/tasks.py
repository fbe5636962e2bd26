"""Task names, their queues, and the publisher the apps use to send work by name.

The apps never import the worker: they send ``INGEST_BATCHES_PROCESS`` and the worker
registers a task under the same name. Publishing runs in a small thread pool with a short
timeout and no kombu retry loop, so a dead broker never stalls the event loop; the work is
already durable in Postgres and a beat sweep re-sends whatever was not published.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery import Celery
from kombu import Queue

from milepost_common.logging import get_logger
from milepost_common.settings import CelerySettings, RedisSettings

INGEST_BATCHES_PROCESS = "ingest_batches.process"
INGEST_BATCHES_RECONCILE = "ingest_batches.reconcile"
WEBHOOKS_DELIVER = "webhooks.deliver"
WEBHOOKS_SWEEP = "webhooks.sweep"
ALERTS_DETECT_OFFLINE = "alerts.detect_offline"
POSITIONS_MAINTAIN_PARTITIONS = "positions.maintain_partitions"
RETENTION_APPLY = "retention.apply"
SYSTEM_HEARTBEAT = "system.heartbeat"
SYSTEM_PING = "system.ping"

# The worker's liveness record, on the broker Redis: one key per worker node,
# ``WORKER_HEARTBEAT_PREFIX + <node name>``, whose value is the JSON
# ``{"at": <unix seconds>}`` of its last consumed heartbeat, with a TTL. The admin's system
# status lists them; a worker not seen for WORKER_HEARTBEAT_STALE_S is reported as stale.
WORKER_HEARTBEAT_PREFIX = "milepost:worker:heartbeat:"
WORKER_HEARTBEAT_STALE_S = 180

QUEUE_PROCESSING = "processing"
QUEUE_WEBHOOKS = "webhooks"
QUEUE_MAINTENANCE = "maintenance"
QUEUES = (QUEUE_PROCESSING, QUEUE_WEBHOOKS, QUEUE_MAINTENANCE)

TASK_QUEUES: dict[str, str] = {
    INGEST_BATCHES_PROCESS: QUEUE_PROCESSING,
    WEBHOOKS_DELIVER: QUEUE_WEBHOOKS,
    WEBHOOKS_SWEEP: QUEUE_WEBHOOKS,
    INGEST_BATCHES_RECONCILE: QUEUE_MAINTENANCE,
    ALERTS_DETECT_OFFLINE: QUEUE_MAINTENANCE,
    POSITIONS_MAINTAIN_PARTITIONS: QUEUE_MAINTENANCE,
    RETENTION_APPLY: QUEUE_MAINTENANCE,
    SYSTEM_HEARTBEAT: QUEUE_MAINTENANCE,
    SYSTEM_PING: QUEUE_MAINTENANCE,
}

log = get_logger("milepost.tasks")


def broker_options(redis: RedisSettings, celery: CelerySettings) -> dict[str, Any]:
    """Celery settings that the publisher and the worker must agree on."""
    transport = {
        "visibility_timeout": celery.visibility_timeout_s,
        "socket_timeout": redis.socket_timeout_s,
        "socket_connect_timeout": redis.socket_timeout_s,
        "max_retries": 0,
    }
    return {
        "broker_url": redis.url,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": celery.visibility_timeout_s},
        "visibility_timeout": celery.visibility_timeout_s,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "broker_connection_retry": False,
        "broker_connection_retry_on_startup": False,
        "broker_connection_max_retries": 0,
        "task_routes": {name: {"queue": queue} for name, queue in TASK_QUEUES.items()},
    }


class Publisher:
    """Sends tasks by name; returns False (and logs) instead of hanging when the broker is down."""

    def __init__(self, redis: RedisSettings, celery: CelerySettings) -> None:
        self._celery = Celery("milepost-publisher", set_as_current=False)
        self._celery.conf.update(broker_options(redis, celery))
        self._timeout_s = celery.publish_timeout_s
        self._expires_s = celery.task_expires_s
        # Own small pool: a hung publish never takes a thread the event loop needs.
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="publisher")

    def send_blocking(self, name: str, *args: Any, queue: str | Queue | None = None) -> None:
        """``queue`` overrides the task's own (a health ping to one worker group, or to one
        node's own queue)."""
        self._celery.send_task(
            name,
            args=list(args),
            # A kombu Queue is routed as it is (celery's stubs only say str).
            queue=queue or TASK_QUEUES[name],  # type: ignore[arg-type]
            expires=self._expires_s,
            retry=False,
        )

    async def send(self, name: str, *args: Any) -> bool:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.run_in_executor(self._executor, self.send_blocking, name, *args),
                self._timeout_s,
            )
        except Exception as exc:  # noqa: BLE001 - any broker failure leaves the work to the sweep
            log.warning("publish_failed", task=name, error=type(exc).__name__)
            return False
        return True

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._celery.close()
