"""The Celery configuration the worker runs with, and the settings that guard it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError

from milepost_common import tasks as names
from milepost_common.errors import TransientError
from milepost_worker.celery_app import beat_schedule, create_celery
from milepost_worker.settings import WorkerSettings
from milepost_worker.tasks import is_transient, retry_delay_s
from milepost_worker.tasks.webhooks import deliver


@pytest.fixture
def settings(settings_factory: Callable[..., Any]) -> WorkerSettings:
    built: WorkerSettings = settings_factory(WorkerSettings)
    return built


class TestCeleryConfig:
    def test_reliability_settings(self, settings: WorkerSettings) -> None:
        conf = create_celery(settings).conf
        assert conf.task_acks_late
        assert conf.task_reject_on_worker_lost
        assert conf.worker_prefetch_multiplier == 1
        assert conf.worker_disable_prefetch
        assert conf.task_serializer == "json"
        assert conf.accept_content == ["json"]
        assert conf.task_ignore_result
        assert conf.worker_soft_shutdown_timeout > 0
        visibility = settings.celery.visibility_timeout_s
        assert conf.broker_transport_options["visibility_timeout"] == visibility
        assert conf.result_backend_transport_options["visibility_timeout"] == visibility
        assert conf.visibility_timeout == visibility
        assert conf.task_time_limit < visibility
        assert conf.task_soft_time_limit < conf.task_time_limit

    def test_queues_and_routes_match_the_publisher(self, settings: WorkerSettings) -> None:
        conf = create_celery(settings).conf
        assert sorted(q.name for q in conf.task_queues) == sorted(names.QUEUES)
        assert all(q.exchange.name == q.name == q.routing_key for q in conf.task_queues)
        assert (
            conf.task_routes == names.broker_options(settings.redis, settings.celery)["task_routes"]
        )

    def test_beat_schedule_sends_every_job_with_expires(self, settings: WorkerSettings) -> None:
        schedule = beat_schedule(settings)
        assert set(schedule) == {
            names.SYSTEM_HEARTBEAT,
            names.ALERTS_DETECT_OFFLINE,
            names.INGEST_BATCHES_RECONCILE,
            names.WEBHOOKS_SWEEP,
            names.POSITIONS_MAINTAIN_PARTITIONS,
            names.RETENTION_APPLY,
        }
        assert schedule[names.ALERTS_DETECT_OFFLINE]["schedule"] == 60.0
        for entry in schedule.values():
            assert entry["options"]["expires"] > 0
            assert entry["options"]["queue"] == names.TASK_QUEUES[entry["task"]]


class TestSettings:
    def test_visibility_timeout_must_exceed_limits(
        self, settings_factory: Callable[..., Any]
    ) -> None:
        with pytest.raises(ValidationError, match="VISIBILITY_TIMEOUT_S"):
            settings_factory(WorkerSettings, celery={"visibility_timeout_s": 100})

    def test_soft_limit_below_hard_limit(self, settings_factory: Callable[..., Any]) -> None:
        with pytest.raises(ValidationError, match="SOFT_TIME_LIMIT"):
            settings_factory(WorkerSettings, worker={"task_soft_time_limit_s": 300})

    def test_lease_renewed_before_it_runs_out(self, settings_factory: Callable[..., Any]) -> None:
        with pytest.raises(ValidationError, match="BATCH_LEASE_RENEW_S"):
            settings_factory(
                WorkerSettings, worker={"batch_lease_s": 10, "batch_lease_renew_s": 10}
            )

    def test_recovery_defaults(self, settings: WorkerSettings) -> None:
        w = settings.worker
        assert (w.reconcile_interval_s, w.reconcile_pending_after_s) == (10.0, 30.0)
        assert (w.batch_lease_s, w.batch_lease_renew_s) == (30.0, 10.0)
        assert beat_schedule(settings)[names.INGEST_BATCHES_RECONCILE]["schedule"] == 10.0


class TestRetries:
    def test_transient_errors(self) -> None:
        class Orig(Exception):
            sqlstate = "57014"  # query_canceled (statement timeout)

        assert is_transient(TransientError())
        assert is_transient(ConnectionRefusedError())
        assert is_transient(DBAPIError("SELECT 1", None, Orig()))
        assert not is_transient(IntegrityError("INSERT", None, Exception("duplicate")))
        assert not is_transient(ValueError("bug"))

    def test_backoff_grows_with_jitter_and_is_capped(self) -> None:
        delays = [retry_delay_s(n) for n in range(12)]
        assert all(d <= 300 for d in delays)
        assert delays[0] <= 2.0 <= delays[4]


class TestWebhookTaskLimits:
    def test_the_attempt_deadline_ends_well_inside_the_delivery_task_limits(
        self, settings: WorkerSettings
    ) -> None:
        soft, hard = settings.webhook_task_limits_s
        assert settings.webhooks.timeout_s + 5 <= soft < hard < settings.worker.webhook_claim_s
        assert (deliver.soft_time_limit, deliver.time_limit) == (soft, hard)

    def test_a_claim_must_outlast_the_delivery_task(
        self, settings_factory: Callable[..., Any]
    ) -> None:
        with pytest.raises(ValidationError, match="WEBHOOK_CLAIM_S"):
            settings_factory(WorkerSettings, webhooks={"timeout_s": 45})
