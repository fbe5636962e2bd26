"""Settings of the worker and beat: the common groups plus ``worker`` (MILEPOST_WORKER__*)."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Self

from pydantic import BaseModel, Field, model_validator

from milepost_common.settings import CommonSettings, DbSettings, load_settings


class WorkerGroup(BaseModel):
    metrics_port: int = Field(9101, ge=0, le=65535, description="0 turns the metrics server off.")
    metrics_host: str = "127.0.0.1"
    # Celery limits. The Redis visibility timeout (celery group) must exceed all of them.
    task_time_limit_s: int = Field(300, gt=0, description="Hard limit: the child is killed.")
    task_soft_time_limit_s: int = Field(240, gt=0, description="SoftTimeLimitExceeded raised.")
    soft_shutdown_timeout_s: float = Field(
        30.0, ge=0, description="On SIGTERM, running tasks get this long to finish."
    )
    batch_max_retries: int = Field(8, ge=0, description="Retries of a batch on transient errors.")
    retry_backoff_base_s: float = Field(2.0, gt=0, description="First retry delay (doubles).")
    retry_backoff_max_s: float = Field(300.0, gt=0, description="Largest retry delay.")
    # Beat.
    heartbeat_interval_s: float = Field(
        30.0, gt=0, description="Beat's heartbeat task, and each node's own record, this often."
    )
    offline_interval_s: float = Field(60.0, gt=0)
    reconcile_interval_s: float = Field(
        10.0, gt=0, description="The batch reconciler runs this often (one indexed query)."
    )
    reconcile_pending_after_s: float = Field(
        30.0,
        ge=0,
        description="Batches received/queued whose last publish attempt is this old are sent "
        "again (never more often than once per reconcile interval).",
    )
    batch_lease_s: float = Field(
        30.0,
        gt=0,
        description="A processing batch is held this long past its last renewal; once it "
        "expires, the reconciler sends the batch again. Longer than any stretch a child's "
        "event loop spends without I/O.",
    )
    batch_lease_renew_s: float = Field(
        10.0, gt=0, description="The holder renews its lease this often (below the lease)."
    )
    maintenance_interval_s: float = Field(
        3600.0, gt=0, description="Partitions ahead and retention run this often."
    )
    retention_batch_size: int = Field(5000, gt=0, description="Rows per DELETE statement.")
    partition_lock_timeout_ms: int = Field(
        2000,
        gt=0,
        description="Creating or dropping a positions partition waits at most this long for "
        "its lock on positions, then gives up until the next run. A drop's ACCESS EXCLUSIVE "
        "lock is held off by any open reader (an export's cursor) and ingest's inserts queue "
        "behind the wait; a creation's (SHARE UPDATE EXCLUSIVE) only by another DDL.",
    )
    # Webhooks (the attempt's deadline, answer cap, per-organization limit and private
    # receivers: the `webhooks` group, MILEPOST_WEBHOOKS__*).
    webhook_sweep_interval_s: float = Field(15.0, gt=0)
    webhook_max_attempts: int = Field(8, ge=1)
    webhook_backoff_base_s: float = Field(30.0, gt=0, description="Delay after the 1st failure.")
    webhook_backoff_max_s: float = Field(6 * 3600.0, gt=0)
    webhook_claim_s: float = Field(
        60.0,
        gt=0,
        description="An attempt in flight hides its delivery from the sweep, and holds its"
        " organization's slot, this long; must exceed the delivery task's hard time limit"
        " (the attempt deadline + 20 s), so no delivery is sent again while it is running.",
    )

    @model_validator(mode="after")
    def _lease(self) -> Self:
        if self.batch_lease_renew_s >= self.batch_lease_s:
            raise ValueError("MILEPOST_WORKER__BATCH_LEASE_RENEW_S must be below the lease")
        return self


class WorkerDb(DbSettings):
    # A prefork child's event loop is idle between tasks, so the driver has not seen a socket
    # the server closed meanwhile by the next checkout: only a round trip finds out (and a
    # task is heavy enough not to mind it).
    pool_pre_ping: bool = True


# Room after the attempt's deadline for claiming and recording it, before the delivery
# task's soft time limit (and again before its hard one).
WEBHOOK_TASK_MARGIN_S = 10


class WorkerSettings(CommonSettings):
    db: WorkerDb = WorkerDb()
    worker: WorkerGroup = WorkerGroup()

    @property
    def webhook_task_limits_s(self) -> tuple[int, int]:
        """(soft, hard) time limits of one delivery task: its attempt ends at the deadline,
        well inside them, so the outcome is always recorded."""
        soft = math.ceil(self.webhooks.timeout_s) + WEBHOOK_TASK_MARGIN_S
        return soft, soft + WEBHOOK_TASK_MARGIN_S

    @property
    def longest_task_s(self) -> int:
        """The longest a task can hold a child: the larger hard time limit kills it then."""
        return max(self.worker.task_time_limit_s, self.webhook_task_limits_s[1])

    @model_validator(mode="after")
    def _visibility(self) -> Self:
        w = self.worker
        longest = max(w.task_time_limit_s, w.retry_backoff_max_s, self.webhook_task_limits_s[1])
        if self.celery.visibility_timeout_s <= longest:
            raise ValueError(
                "MILEPOST_CELERY__VISIBILITY_TIMEOUT_S must exceed the task time limit and the "
                "longest retry delay"
            )
        if w.task_soft_time_limit_s >= w.task_time_limit_s:
            raise ValueError("MILEPOST_WORKER__TASK_SOFT_TIME_LIMIT_S must be below the hard limit")
        if w.webhook_claim_s <= self.webhook_task_limits_s[1]:
            raise ValueError(
                "MILEPOST_WORKER__WEBHOOK_CLAIM_S must exceed MILEPOST_WEBHOOKS__TIMEOUT_S + "
                f"{2 * WEBHOOK_TASK_MARGIN_S} s (the delivery task's hard time limit)"
            )
        return self


@lru_cache
def get_settings() -> WorkerSettings:
    return load_settings(WorkerSettings)
