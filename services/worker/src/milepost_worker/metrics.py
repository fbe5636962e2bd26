"""Worker metrics, in prometheus-client's multiprocess mode (one file set per prefork child).

``PROMETHEUS_MULTIPROC_DIR`` must be set before this module is imported (the CLI does it);
the main process serves the merged view on ``MILEPOST_WORKER__METRICS_PORT``.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)

from milepost_common import tasks as names

TASKS = Counter(
    "milepost_worker_tasks_total", "Tasks run, by task name and outcome.", ["task", "outcome"]
)
# Every series from 0, in every process: increase() cannot count the first error of a series
# that appears at 1, so an hourly job failing on a different pod each hour never alerted.
for _task in names.TASK_QUEUES:
    for _outcome in ("ok", "error"):
        TASKS.labels(_task, _outcome)
TASK_DURATION = Histogram(
    "milepost_worker_task_duration_seconds",
    "Task run time by task name.",
    ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
PROCESSING_LAG = Histogram(
    "milepost_worker_processing_lag_seconds",
    "Now minus fix_time of each device's newest fix, when its batch is processed.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400),
)
FIXES = Counter("milepost_worker_fixes_total", "Fixes fed to the trip/stop machine.", ["path"])
BATCHES_REQUEUED = Counter(
    "milepost_worker_batches_requeued_total",
    "Batches the reconciler sent again: their holder's lease expired (lease_expired), or "
    "left received/queued since their last publish attempt (pending).",
    ["reason"],
)
WEBHOOK_ATTEMPTS = Counter(
    "milepost_worker_webhook_attempts_total", "Webhook delivery attempts by outcome.", ["outcome"]
)
QUEUE_DEPTH = Gauge(
    "milepost_worker_queue_depth",
    "Messages waiting per queue (at heartbeat).",
    ["queue"],
    multiprocess_mode="livemostrecent",
)
BATCHES_FAILED = Counter(
    "milepost_worker_batches_failed_total",
    "Batches given up (now `failed`): after their last retry or on an error not worth one.",
)
WEBHOOK_DELIVERIES_DEAD = Counter(
    "milepost_worker_webhook_deliveries_dead_total",
    "Webhook deliveries given up (now `dead`): attempts used up, 410 Gone, endpoint disabled.",
)
# Set by the heartbeat task that beat sends through the workers every
# MILEPOST_WORKER__HEARTBEAT_INTERVAL_S: a stale value means nothing consumed beat's tasks.
HEARTBEAT = Gauge(
    "milepost_worker_heartbeat_timestamp_seconds",
    "Unix time of the last heartbeat task this worker consumed (0: none yet).",
    multiprocess_mode="max",
)
# A snapshot of the database taken with each heartbeat (one indexed query, one catalog query).
# Every worker that ran a heartbeat keeps its last snapshot: read the one of the worker with
# the newest heartbeat (the milepost:* recording rules of deploy/monitoring do).
BATCHES = Gauge(
    "milepost_worker_ingest_batches",
    "Ingest batches not processed, by status (received, queued, processing, failed).",
    ["status"],
    multiprocess_mode="mostrecent",
)
OLDEST_UNPROCESSED = Gauge(
    "milepost_worker_oldest_unprocessed_batch_age_seconds",
    "Processing lag: now minus the receive time of the oldest batch not processed yet "
    "(received, queued or processing); 0 when there is none.",
    multiprocess_mode="mostrecent",
)
PARTITION_DAYS_AHEAD = Gauge(
    "milepost_worker_positions_partition_days_ahead",
    "Days after today (UTC) covered by positions partitions: 2 when partition maintenance "
    "keeps up; -1 when there is none.",
    multiprocess_mode="mostrecent",
)


def serve(host: str, port: int) -> None:
    """Serve the children's merged metrics from this (main) process."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, addr=host, registry=registry)


def mark_dead(pid: int) -> None:
    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
