"""The Celery application: Redis broker, three queues, reliability settings, beat schedule.

Late acknowledgement with reject-on-worker-lost (a SIGKILLed child's batch is redelivered),
no prefetch, soft shutdown, time limits under the Redis visibility timeout (set in all three
places by ``broker_options``), JSON only, results ignored (outcomes live in Postgres). The
publisher settings are shared with the apps through ``milepost_common.tasks.broker_options``.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals
from celery.worker import state
from kombu import Exchange, Queue

from milepost_common import tasks as names
from milepost_common.logging import configure_logging, get_logger
from milepost_common.tracing import configure_tracing, shutdown_tracing
from milepost_worker import metrics
from milepost_worker.health import NodeHeartbeat
from milepost_worker.runtime import close_runtime, init_runtime
from milepost_worker.settings import WorkerSettings, get_settings

log = get_logger("milepost.worker")

# What `milepost-worker` consumes without -Q: everything but `webhooks`. Deliveries wait on
# customers' receivers, so they run in a worker group of their own (`-Q webhooks`): no
# receiver can hold a child that batch processing needs.
PROCESSING_QUEUES = (names.QUEUE_PROCESSING, names.QUEUE_MAINTENANCE)


def create_celery(settings: WorkerSettings) -> Celery:
    w = settings.worker
    app = Celery("milepost", set_as_current=True)
    app.conf.update(names.broker_options(settings.redis, settings.celery))
    app.conf.update(
        # The worker keeps reconnecting to the broker (the apps' publisher never waits).
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # Each queue on its own direct exchange, as the apps' publisher declares them.
        task_queues=[Queue(q, Exchange(q, type="direct"), routing_key=q) for q in names.QUEUES],
        task_default_queue=names.QUEUE_PROCESSING,
        # Each node also consumes a queue of its own: its liveness probe pings it there.
        worker_direct=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_disable_prefetch=True,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_soft_shutdown_timeout=w.soft_shutdown_timeout_s,
        worker_enable_soft_shutdown_on_idle=True,
        task_time_limit=w.task_time_limit_s,
        task_soft_time_limit=w.task_soft_time_limit_s,
        result_backend=None,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        timezone="UTC",
        enable_utc=True,
        beat_schedule=beat_schedule(settings),
        include=[
            "milepost_worker.tasks.ingest_batches",
            "milepost_worker.tasks.webhooks",
            "milepost_worker.tasks.maintenance",
            "milepost_worker.tasks.system",
        ],
    )
    return app


def beat_schedule(settings: WorkerSettings) -> dict[str, dict[str, Any]]:
    """Every entry expires after its own interval: a backlog never runs a job twice over."""
    w = settings.worker
    jobs = {
        names.SYSTEM_HEARTBEAT: w.heartbeat_interval_s,
        names.ALERTS_DETECT_OFFLINE: w.offline_interval_s,
        names.INGEST_BATCHES_RECONCILE: w.reconcile_interval_s,
        names.WEBHOOKS_SWEEP: w.webhook_sweep_interval_s,
        names.POSITIONS_MAINTAIN_PARTITIONS: w.maintenance_interval_s,
        names.RETENTION_APPLY: w.maintenance_interval_s,
    }
    return {
        name: {
            "task": name,
            "schedule": interval,
            "options": {"queue": names.TASK_QUEUES[name], "expires": max(interval, 5.0)},
        }
        for name, interval in jobs.items()
    }


@signals.setup_logging.connect
def _logging(**_: Any) -> None:
    configure_logging(get_settings().log_level, service="worker")


_node_heartbeat: NodeHeartbeat | None = None


@signals.worker_ready.connect
def _node_started(sender: Any, **_: Any) -> None:
    global _node_heartbeat
    settings = get_settings()
    concurrency = sender.controller.concurrency
    _node_heartbeat = NodeHeartbeat(
        settings.redis.url,
        sender.hostname,
        settings.worker.heartbeat_interval_s,
        settings.redis.socket_timeout_s,
        busy=lambda: len(state.active_requests) >= concurrency,
    )
    _node_heartbeat.start()


@signals.task_received.connect
def _task_received(**_: Any) -> None:
    if _node_heartbeat is not None:
        _node_heartbeat.task_received()


@signals.worker_shutdown.connect
def _node_stopping(**_: Any) -> None:
    if _node_heartbeat is not None:
        _node_heartbeat.stop()


@signals.worker_process_init.connect
def _child_started(**_: Any) -> None:
    # Tracing after the fork: the exporter's thread and connections belong to this child.
    settings = get_settings()
    configure_tracing(settings, service="worker")
    init_runtime(settings)


@signals.worker_process_shutdown.connect
def _child_stopping(**_: Any) -> None:
    close_runtime()
    shutdown_tracing()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics.mark_dead(os.getpid())


celery_app = create_celery(get_settings())
