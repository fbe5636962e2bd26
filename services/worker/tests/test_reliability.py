"""Reliability with real processes: a worker SIGKILLed in the middle of a batch, Redis
stopped while batches are processed, Postgres restarted, a slow batch beside an idle child.
Nothing accepted is lost, nothing is duplicated, and a batch caught mid-processing is picked up
again within seconds (its lease expires; beat's reconciler sends it again)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from worker_processes import RedisProcess, WorkerStack, eventually, free_port
from worker_support import MemoryStore, base_time_s, expected_rows, golden_drive, rows, write_batch

from milepost_common import tasks as names
from milepost_common.db import unit_of_work
from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts.models import Alert, AlertType
from milepost_common.domain.devices.models import Device
from milepost_common.domain.ingest_batches.models import BatchStatus, IngestBatch
from milepost_common.domain.organizations.models import Organization
from milepost_common.migrate import migrate
from milepost_common.testing.plugin import clone_database, drop_database
from milepost_devstack.postgres import SUPERUSER, PostgresServer
from milepost_worker.motion.machine import Fix, MotionParams
from milepost_worker.rules.engine import RuleSpec

pytestmark = pytest.mark.slow

# Measured recovery times (shown with ``-o log_cli=true --log-cli-level=INFO``).
log = logging.getLogger("milepost.tests.reliability")

BATTERY_RULE = {"threshold_pct": 20}


@pytest.fixture
async def stack(
    template_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[WorkerStack]:
    db_url = await clone_database(template_database_url, "milepost_reliab")
    redis = RedisProcess(tmp_path_factory.mktemp("redis"))
    redis.start()
    stack = WorkerStack(db_url, redis)
    try:
        yield stack
    finally:
        await stack.close()
        redis.stop()
        await drop_database(db_url)


def drive_with_low_battery(t0: float) -> list[Fix]:
    fixes = golden_drive(t0)
    for fix in fixes[45:]:
        fix.attributes = {"battery": 12}
    return fixes


async def fleet(stack: WorkerStack, devices: int) -> tuple[list[Device], AlertRule]:
    async with unit_of_work(stack.db) as session:
        org = Organization(name=f"org {uuid.uuid4().hex[:6]}")
        session.add(org)
        await session.flush()
        rule = AlertRule(
            org_id=org.id, name="battery", type=AlertType.LOW_BATTERY, params=BATTERY_RULE
        )
        cars = [
            Device(org_id=org.id, unique_id=uuid.uuid4().hex, name=f"van {i}")
            for i in range(devices)
        ]
        session.add_all([rule, *cars])
    return cars, rule


def expected(fixes: list[Fix], rule: AlertRule) -> dict[str, Any]:
    store = MemoryStore(MotionParams(), [RuleSpec(str(rule.id), "low_battery", BATTERY_RULE)])
    store.process(store.ingest(fixes))
    return expected_rows(store)


async def statuses(stack: WorkerStack, batch_ids: list[uuid.UUID]) -> list[str]:
    async with unit_of_work(stack.db) as session:
        found = (
            (
                await session.execute(
                    select(col(IngestBatch.status)).where(col(IngestBatch.id).in_(batch_ids))
                )
            )
            .scalars()
            .all()
        )
    return [str(s) for s in found]


async def reconcile_until_processed(
    stack: WorkerStack, batch_ids: list[uuid.UUID], timeout_s: float = 60.0
) -> None:
    async def done() -> bool:
        with contextlib.suppress(Exception):  # the broker may still be coming back
            stack.send(names.INGEST_BATCHES_RECONCILE)  # what beat does every minute
        found = await statuses(stack, batch_ids)
        return found == [BatchStatus.PROCESSED] * len(batch_ids)

    await eventually(done, timeout_s=timeout_s, interval_s=1.0, what="every batch processed")


# The broker's own redelivery of a message whose worker vanished waits for the visibility
# timeout (2 h by default): the recovery tests keep that, so only the lease can recover them.
PRODUCTION_VISIBILITY = {"MILEPOST_CELERY__VISIBILITY_TIMEOUT_S": "7200"}
RECOVERY_DEADLINE_S = 60.0
REQUEUED_BY_LEASE = 'milepost_worker_batches_requeued_total{reason="lease_expired"}'


async def hold_device(blocker: AsyncConnection, device: Device) -> None:
    """Lock the device's state: a worker processing its batch waits there, mid-batch."""
    await blocker.execute(
        text(
            "INSERT INTO device_state (device_id, org_id, motion) VALUES (:d, :o, 'stopped') "
            "ON CONFLICT DO NOTHING"
        ),
        {"d": device.id, "o": device.org_id},
    )
    await blocker.commit()
    await blocker.execute(
        text("SELECT 1 FROM device_state WHERE device_id = :d FOR UPDATE"), {"d": device.id}
    )


async def lock_waiters(stack: WorkerStack) -> int:
    """Worker backends waiting on a lock (a batch mid-processing, or a claim behind it)."""
    async with unit_of_work(stack.db) as session:
        waiting = (
            await session.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND application_name = 'milepost-worker'"
                )
            )
        ).scalar_one()
    return int(waiting)


async def processed_within(stack: WorkerStack, batch_ids: list[uuid.UUID], what: str) -> float:
    """Seconds until every batch is processed (only beat's reconciler sends anything again)."""
    started = time.monotonic()

    async def done() -> bool:
        return await statuses(stack, batch_ids) == [BatchStatus.PROCESSED] * len(batch_ids)

    try:
        await eventually(done, timeout_s=RECOVERY_DEADLINE_S, interval_s=0.2, what=what)
    except AssertionError as exc:
        async with unit_of_work(stack.db) as session:
            left = (
                await session.execute(
                    select(
                        col(IngestBatch.id),
                        col(IngestBatch.status),
                        col(IngestBatch.lease_holder),
                        col(IngestBatch.last_error),
                    ).where(
                        col(IngestBatch.id).in_(batch_ids),
                        col(IngestBatch.status) != BatchStatus.PROCESSED,
                    )
                )
            ).all()
        logs = "\n".join(p.log_tail(2000) for p in stack.processes)
        raise AssertionError(f"{exc}; not processed: {left}; logs:\n{logs}") from None
    return time.monotonic() - started


class TestWorkerKilled:
    async def test_sigkill_mid_batch_is_processed_again_soon_after_the_restart(
        self, stack: WorkerStack
    ) -> None:
        stack.env.update(PRODUCTION_VISIBILITY)
        worker = stack.worker()
        stack.beat()
        assert stack.consumed_ping(60), worker.log_tail()
        (device,), rule = await fleet(stack, 1)
        fixes = drive_with_low_battery(base_time_s())
        async with unit_of_work(stack.db) as session:
            batch = await write_batch(session, device, fixes)

        async with stack.db.engine.connect() as blocker:
            await hold_device(blocker, device)
            stack.send(names.INGEST_BATCHES_PROCESS, str(batch.id))

            async def mid_batch() -> bool:
                return await lock_waiters(stack) > 0

            await eventually(mid_batch, what="the worker blocked mid-batch")
            worker.kill()  # the main process and its children at once, as a crashed host
            await blocker.rollback()
        assert await statuses(stack, [batch.id]) == [BatchStatus.PROCESSING]

        stack.worker()
        recovery_s = await processed_within(stack, [batch.id], "the batch processed again")
        log.info("recovery after the worker's restart: %.1f s", recovery_s)
        stack.send(names.INGEST_BATCHES_PROCESS, str(batch.id))  # a late redelivery: a no-op
        assert stack.consumed_ping(30)
        async with unit_of_work(stack.db) as session:
            assert await rows(session, device) == expected(fixes, rule)
            alerts = (
                await session.execute(
                    select(func.count()).select_from(Alert).where(col(Alert.device_id) == device.id)
                )
            ).scalar_one()
            row = await session.get(IngestBatch, batch.id)
        assert alerts == 1
        assert row is not None
        assert (row.attempts, row.lease_holder, row.lease_expires_at) == (2, None, None)


# Long enough for the lease (3 s in tests) to run out while the broker is away.
REDIS_DOWN_S = 8.0


class TestRedisStopped:
    async def test_every_batch_processed_soon_after_the_broker_returns(
        self, stack: WorkerStack
    ) -> None:
        stack.env.update(PRODUCTION_VISIBILITY)
        worker = stack.worker()
        stack.beat()
        assert stack.consumed_ping(60), worker.log_tail()
        devices, rule = await fleet(stack, 3)
        drives = {
            d.id: drive_with_low_battery(base_time_s() - 5000 * i) for i, d in enumerate(devices)
        }
        batch_ids: list[uuid.UUID] = []
        async with unit_of_work(stack.db) as session:
            for part in range(6):
                for device in devices:
                    fixes = drives[device.id]
                    size = len(fixes) // 6 + 1
                    batch = await write_batch(
                        session, device, fixes[part * size : (part + 1) * size]
                    )
                    batch_ids.append(batch.id)

        async with stack.db.engine.connect() as blocker:
            await hold_device(blocker, devices[0])
            for batch_id in batch_ids[:6]:
                stack.send(names.INGEST_BATCHES_PROCESS, str(batch_id))

            async def mid_batch() -> bool:
                return await lock_waiters(stack) > 0

            await eventually(mid_batch, what="a worker child blocked mid-batch")
            # The worker cancels the tasks it runs when the broker goes away.
            stack.redis.stop()
            await blocker.rollback()
        for batch_id in batch_ids[6:]:
            with contextlib.suppress(Exception):  # like ingest: left received for the reconciler
                stack.send(names.INGEST_BATCHES_PROCESS, str(batch_id))
        await asyncio.sleep(REDIS_DOWN_S)
        stack.redis.start()

        recovery_s = await processed_within(stack, batch_ids, "every batch processed")
        log.info("recovery after Redis's return: %.1f s", recovery_s)
        async with unit_of_work(stack.db) as session:
            for device in devices:
                assert await rows(session, device) == expected(drives[device.id], rule)
            alerts = (
                await session.execute(
                    select(func.count())
                    .select_from(Alert)
                    .where(col(Alert.device_id).in_([d.id for d in devices]))
                )
            ).scalar_one()
        assert alerts == len(devices)  # one low-battery alert per van, none twice
        assert stack.metric(REQUEUED_BY_LEASE) >= 1


class TestSlowBatch:
    async def test_is_not_taken_by_an_idle_child_while_its_lease_is_renewed(
        self, stack: WorkerStack
    ) -> None:
        stack.env.update(PRODUCTION_VISIBILITY)
        worker = stack.worker(concurrency=2)  # the second child stays idle, free to take it
        stack.beat()
        assert stack.consumed_ping(60), worker.log_tail()
        (device,), _ = await fleet(stack, 1)
        async with unit_of_work(stack.db) as session:
            batch = await write_batch(session, device, golden_drive(base_time_s())[:20])

        async def lease() -> tuple[str | None, float, int]:
            """Holder, seconds left on its lease (by the database's clock), attempts."""
            async with unit_of_work(stack.db) as session:
                holder, left, attempts = (
                    await session.execute(
                        select(
                            col(IngestBatch.lease_holder),
                            func.extract("epoch", col(IngestBatch.lease_expires_at) - func.now()),
                            col(IngestBatch.attempts),
                        ).where(col(IngestBatch.id) == batch.id)
                    )
                ).one()
            return holder, float(left or 0), attempts

        async with stack.db.engine.connect() as blocker:
            await hold_device(blocker, device)
            stack.send(names.INGEST_BATCHES_PROCESS, str(batch.id))

            async def mid_batch() -> bool:
                return await lock_waiters(stack) > 0

            await eventually(mid_batch, what="the worker blocked mid-batch")
            holder, _, _ = await lease()
            # Over two leases long, beat's reconciler running every second.
            for _ in range(7):
                await asyncio.sleep(1.0)
                now_holder, left, attempts = await lease()
                assert (now_holder, attempts) == (holder, 1)
                assert left > 0, "the lease ran out while its holder was alive"
            assert await lock_waiters(stack) == 1  # no second claim waiting behind it
            assert stack.metric(REQUEUED_BY_LEASE) == 0
            await blocker.rollback()

        async def processed() -> bool:
            return await statuses(stack, [batch.id]) == [BatchStatus.PROCESSED]

        await eventually(processed, what="the slow batch processed")
        assert (await lease())[2] == 1


@pytest.fixture
async def own_postgres_stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[WorkerStack, PostgresServer]]:
    """A worker stack on a Postgres server of its own, which the test may restart without
    disturbing the tests running next to it."""
    root = Path(tempfile.mkdtemp(prefix="milepost-pg-restart-"))
    server = PostgresServer(root, free_port(), root / "postgres.log", durable=False)
    password = secrets.token_urlsafe(16)
    redis = RedisProcess(tmp_path_factory.mktemp("redis"))
    try:
        server.prepare()
        server.initdb(password)
        server.start()
        db_url = server.url(SUPERUSER, password, "postgres").replace(
            "postgresql://", "postgresql+asyncpg://", 1
        )
        await migrate(db_url)
        redis.start()
        stack = WorkerStack(db_url, redis)
        try:
            yield stack, server
        finally:
            await stack.close()
    finally:
        redis.stop()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


class TestPostgresRestarted:
    async def test_batches_complete_after_a_database_restart(
        self, own_postgres_stack: tuple[WorkerStack, PostgresServer]
    ) -> None:
        stack, server = own_postgres_stack
        worker = stack.worker()
        assert stack.consumed_ping(60), worker.log_tail()
        devices, rule = await fleet(stack, 3)
        drives = {
            d.id: drive_with_low_battery(base_time_s() - 5000 * i) for i, d in enumerate(devices)
        }
        batch_ids: list[uuid.UUID] = []
        async with unit_of_work(stack.db) as session:
            for part in range(6):
                for device in devices:
                    fixes = drives[device.id]
                    size = len(fixes) // 6 + 1
                    batch = await write_batch(
                        session, device, fixes[part * size : (part + 1) * size]
                    )
                    batch_ids.append(batch.id)
        for index, batch_id in enumerate(batch_ids):
            if index == len(batch_ids) // 3:
                # Fast shutdown (every connection terminated, open transactions rolled back)
                # and start again, while the worker holds pooled connections and tasks run.
                server.stop()
                server.start()
            stack.send(names.INGEST_BATCHES_PROCESS, str(batch_id))
            await asyncio.sleep(0.02)
        # The test's own pooled connections died too: reading the statuses needs them
        # replaced without an error, as an app's would be.
        try:
            await reconcile_until_processed(stack, batch_ids, timeout_s=90)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; worker log:\n{worker.log_tail()}") from None
        async with unit_of_work(stack.db) as session:
            for device in devices:
                assert await rows(session, device) == expected(drives[device.id], rule)
            alerts = (await session.execute(select(func.count()).select_from(Alert))).scalar_one()
        assert alerts == len(devices)  # one low-battery alert per van, none twice


class TestRetriesExhausted:
    async def test_batch_is_failed_with_its_error_after_the_last_retry(
        self, stack: WorkerStack
    ) -> None:
        stack.env["MILEPOST_DB__STATEMENT_TIMEOUT_MS"] = "300"
        stack.env["MILEPOST_WORKER__BATCH_MAX_RETRIES"] = "2"
        worker = stack.worker()
        assert stack.consumed_ping(60), worker.log_tail()
        (device,), _ = await fleet(stack, 1)
        async with unit_of_work(stack.db) as session:
            batch = await write_batch(session, device, golden_drive(base_time_s())[:5])
            await session.execute(
                text(
                    "INSERT INTO device_state (device_id, org_id, motion) "
                    "VALUES (:d, :o, 'stopped')"
                ),
                {"d": device.id, "o": device.org_id},
            )

        # The device stays locked: every attempt times out (a transient database error).
        async with stack.db.engine.connect() as blocker:
            await blocker.execute(
                text("SELECT 1 FROM device_state WHERE device_id = :d FOR UPDATE"), {"d": device.id}
            )
            stack.send(names.INGEST_BATCHES_PROCESS, str(batch.id))

            async def failed() -> bool:
                return await statuses(stack, [batch.id]) == [BatchStatus.FAILED]

            await eventually(failed, timeout_s=60, what="the batch failed")
            await blocker.rollback()
        async with unit_of_work(stack.db) as session:
            row = await session.get(IngestBatch, batch.id)
        assert row is not None
        assert row.attempts == 3
        assert row.last_error is not None
        assert "statement timeout" in row.last_error
        # Postgres' message, not the statement: the batch's clients read it.
        assert ("[SQL:" in row.last_error, "device_state" in row.last_error) == (False, False)
