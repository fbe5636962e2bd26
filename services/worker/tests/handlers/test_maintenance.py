"""Beat jobs in-process: partitions ahead, retention (ingest batches' included)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, func, select

from milepost_common.db import unit_of_work
from milepost_common.domain.alerts.models import Alert
from milepost_common.domain.devices.models import Device
from milepost_common.domain.ingest_batches.models import BatchStatus, IngestBatch
from milepost_common.domain.organizations import service as organizations
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.organizations.schemas import OrganizationUpdate
from milepost_common.domain.positions.models import Position
from milepost_common.domain.principals import SYSTEM
from milepost_common.domain.trips.models import MotionCheckpoint, Stop, Trip
from milepost_common.domain.webhooks.models import DeliveryStatus, WebhookDelivery
from milepost_common.testing.factories import (
    make_alert,
    make_batch,
    make_device,
    make_history,
    make_organization,
    make_stop,
    make_trip,
    make_webhook_delivery,
)
from milepost_worker.handlers import maintenance
from milepost_worker.runtime import WorkerContext, build_context
from milepost_worker.settings import WorkerSettings
from milepost_worker.timeutil import utcnow


@pytest.fixture
async def own_ctx(
    committed_database: str, redis: Redis, settings_factory: Callable[..., Any]
) -> AsyncIterator[WorkerContext]:
    """A context on a database of its own: partitions are DDL, outside any test transaction."""
    settings = settings_factory(
        WorkerSettings, db={"url": committed_database}, worker={"retention_batch_size": 2}
    )
    ctx = build_context(settings)
    yield ctx
    await ctx.aclose()


def position(device: Device, at: datetime) -> Position:
    return Position(device_id=device.id, org_id=device.org_id, fix_time=at, lat=1.0, lon=1.0)


async def retention_state(ctx: WorkerContext, org_id: uuid.UUID) -> tuple[datetime | None, int]:
    """The organization's retention watermark and how many positions it has stored."""
    async with unit_of_work(ctx.db) as session:
        org = await session.get(Organization, org_id)
        assert org is not None
        stored = await session.scalar(
            select(func.count()).select_from(Position).where(Position.org_id == org_id)
        )
    return org.retention_applied_until, stored or 0


class TestPartitionsAndRetention:
    async def test_partitions_exist_ahead(self, own_ctx: WorkerContext) -> None:
        async with own_ctx.db.engine.begin() as conn:
            await conn.execute(
                text(
                    "DROP TABLE IF EXISTS positions_p"
                    + (utcnow() + timedelta(days=2)).strftime("%Y%m%d")
                )
            )
        assert await maintenance.maintain_partitions(own_ctx) >= 1
        assert await maintenance.maintain_partitions(own_ctx) == 0

    async def test_partitions_are_made_a_run_of_days_at_a_time(
        self, own_ctx: WorkerContext
    ) -> None:
        # A ten-year retention's 3,650 days in one transaction ran out of shared memory having
        # made nothing, every hour. A day another partition covers stands in for the failure.
        today = utcnow().date()
        blocked = today - timedelta(days=120)
        async with own_ctx.db.engine.begin() as conn:
            await conn.execute(
                text(
                    "CREATE TABLE positions_blocker PARTITION OF positions "
                    f"FOR VALUES FROM ('{blocked}') TO ('{blocked + timedelta(days=1)}')"
                )
            )

        with pytest.raises(DBAPIError, match="overlap"):
            await maintenance.maintain_partitions(own_ctx)

        day = f"positions_p{today - timedelta(days=90):%Y%m%d}"  # the test database has 40
        async with own_ctx.db.engine.connect() as conn:
            assert await conn.scalar(text(f"SELECT to_regclass('{day}')")) is not None

    async def test_partitions_are_not_made_again_for_retention_to_drop(
        self, own_ctx: WorkerContext
    ) -> None:
        # Every organization keeps 30 days: partitions were made back to 365 every hour and
        # dropped again by retention (an ACCESS EXCLUSIVE lock on positions for each).
        async with unit_of_work(own_ctx.db) as session:
            await make_organization(session)
            await session.execute(text("UPDATE organizations SET retention_days = 30"))
        await maintenance.maintain_partitions(own_ctx)
        await maintenance.apply_retention(own_ctx)

        assert await maintenance.maintain_partitions(own_ctx) == 0
        assert (await maintenance.apply_retention(own_ctx)).partitions_dropped == []

    async def test_retention_drops_old_partitions_and_deletes_per_organization(
        self, own_ctx: WorkerContext
    ) -> None:
        now = utcnow()
        ancient = (now - timedelta(days=400)).date()
        async with unit_of_work(own_ctx.db) as session:
            await session.execute(
                text("SELECT milepost_ensure_position_partitions(:d, :d)"), {"d": ancient}
            )
            short = await make_organization(session, retention_days=5)
            long = await make_organization(session, retention_days=365)
            for org in (short, long):
                device = await make_device(session, org)
                for days in (1, 10, 20):
                    await make_history(session, device, now - timedelta(days=days))
        outcome = await maintenance.apply_retention(own_ctx)
        assert "positions_p" + ancient.strftime("%Y%m%d") in outcome.partitions_dropped
        async with unit_of_work(own_ctx.db) as session:
            for model in (Position, Trip, Stop, Alert):
                counts = dict(
                    (
                        await session.execute(
                            select(col(model.org_id), func.count()).group_by(col(model.org_id))
                        )
                    ).all()
                )
                assert counts == {short.id: 1, long.id: 3}, model.__name__

    async def test_what_is_still_open_outlives_the_retention(self, own_ctx: WorkerContext) -> None:
        # A vehicle parked in its depot for longer than the retention, still reporting: its
        # open stop and dwell alert were deleted and written again as new by the next fix
        # (alert.created again, its acknowledgement lost), every hour.
        now = utcnow()
        parked, older = now - timedelta(days=20), now - timedelta(days=30)
        async with unit_of_work(own_ctx.db) as session:
            org = await make_organization(session, retention_days=5)
            device = await make_device(session, org)
            await make_trip(session, device, older, parked)
            stop = await make_stop(session, device, parked)
            dwell = await make_alert(session, device, parked, details={"end_time": None})
            ended = await make_alert(session, device, older, details={"end_time": "x"})
            for anchor in (older, parked):
                session.add(
                    MotionCheckpoint(
                        device_id=device.id, org_id=org.id, anchor_time=anchor, state={}
                    )
                )

        await maintenance.apply_retention(own_ctx)

        async with unit_of_work(own_ctx.db) as session:
            assert (await session.scalars(select(Trip.id).where(Trip.org_id == org.id))).all() == []
            assert await session.get(Stop, stop.id) is not None
            assert await session.get(Alert, dwell.id) is not None
            assert await session.get(Alert, ended.id) is None
            anchors = await session.scalars(
                select(MotionCheckpoint.anchor_time).where(MotionCheckpoint.device_id == device.id)
            )
            assert anchors.all() == [parked]  # the latest, where a late fix replays from

    async def test_positions_retention_reads_only_the_days_after_its_watermark(
        self, own_ctx: WorkerContext
    ) -> None:
        now = utcnow()
        async with unit_of_work(own_ctx.db) as session:
            await make_organization(session, retention_days=365)  # keeps the partitions
            org = await make_organization(session, retention_days=5)
            device = await make_device(session, org)
            session.add(position(device, now - timedelta(days=8)))
        await maintenance.apply_retention(own_ctx)

        watermark, stored = await retention_state(own_ctx, org.id)
        assert stored == 0
        assert watermark is not None
        expected = now - timedelta(days=5) - maintenance.RETENTION_WATERMARK_MARGIN
        assert abs((watermark - expected).total_seconds()) < 60

        # Below the watermark (ingest refuses fixes that old), a planted row shows the next
        # run no longer reads those days at all.
        async with unit_of_work(own_ctx.db) as session:
            session.add(position(device, watermark - timedelta(hours=1)))
        await maintenance.apply_retention(own_ctx)
        assert (await retention_state(own_ctx, org.id))[1] == 1

        # Changing the retention (a longer one lets ingest store older fixes) clears the
        # watermark: the next run reads every day before the cutoff again.
        async with unit_of_work(own_ctx.db) as session:
            row = await session.get(Organization, org.id)
            assert row is not None
            await organizations.update_organization(
                session, SYSTEM, row, OrganizationUpdate(retention_days=6)
            )
        assert (await retention_state(own_ctx, org.id))[0] is None
        await maintenance.apply_retention(own_ctx)
        assert (await retention_state(own_ctx, org.id))[1] == 0

    async def test_the_longest_retention_is_caught_up_once_another_is_longer(
        self, own_ctx: WorkerContext
    ) -> None:
        """Partitions are dropped by whole days: the longest-keeping organization's rows of
        its oldest kept day, past its cutoff, wait for the per-organization delete."""
        now = utcnow()
        day_start = datetime.combine(
            (now - timedelta(days=2)).date(), datetime.min.time(), tzinfo=UTC
        )
        past_cutoff = day_start + (now - timedelta(days=2) - day_start) / 2
        async with unit_of_work(own_ctx.db) as session:
            org = await make_organization(session, retention_days=2)
            device = await make_device(session, org)
            session.add(position(device, past_cutoff))
        await maintenance.apply_retention(own_ctx)  # the only organization: the longest
        assert (await retention_state(own_ctx, org.id))[1] == 1

        async with unit_of_work(own_ctx.db) as session:
            await make_organization(session, retention_days=30)
        await maintenance.apply_retention(own_ctx)
        assert (await retention_state(own_ctx, org.id))[1] == 0

    async def test_an_organization_failing_does_not_stop_the_next(
        self, own_ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # One statement timeout ended the run: every organization after it kept its expired
        # rows, every hour.
        old = utcnow() - timedelta(days=10)
        async with unit_of_work(own_ctx.db) as session:
            orgs = [await make_organization(session, retention_days=5) for _ in range(2)]
            for org in orgs:
                await make_trip(session, await make_device(session, org), old, old)
        delete_trips = maintenance._EXPIRE["trips"]
        first: list[uuid.UUID] = []

        async def timing_out(
            session: Any, org_id: uuid.UUID, since: datetime, cutoff: datetime, n: int
        ) -> int:
            if not first:
                first.append(org_id)
            if org_id == first[0]:
                await session.execute(text("SET LOCAL statement_timeout = 1"))
                await session.execute(text("SELECT pg_sleep(1)"))
            return await delete_trips(session, org_id, since, cutoff, n)

        monkeypatch.setitem(maintenance._EXPIRE, "trips", timing_out)

        outcome = await maintenance.apply_retention(own_ctx)

        (failed,) = first
        (done,) = {org.id for org in orgs} - {failed}
        assert outcome.organizations_failed == [failed]
        async with unit_of_work(own_ctx.db) as session:
            trips = dict(
                (
                    await session.execute(
                        select(col(Trip.org_id), func.count()).group_by(col(Trip.org_id))
                    )
                ).all()
            )
        assert trips == {failed: 1}
        assert (await retention_state(own_ctx, failed))[0] is None
        assert (await retention_state(own_ctx, done))[0] is not None


# Longer than the worker's 2 s lock timeout, short enough for a test that fails without it.
READER_HOLD_S = 6.0


async def hold_positions(ctx: WorkerContext, held: asyncio.Event, release: asyncio.Event) -> None:
    """An open transaction that has read positions, as an export's cursor does for the whole
    download: ACCESS SHARE on positions until ``release`` (or READER_HOLD_S)."""
    async with ctx.db.engine.connect() as conn:
        await conn.execute(text("SELECT count(*) FROM positions"))
        held.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), READER_HOLD_S)
        await conn.rollback()


async def insert_fix(ctx: WorkerContext) -> float:
    """Seconds an ingest-like insert into today's partition took."""
    started = time.monotonic()
    async with ctx.db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO positions (device_id, fix_time, org_id, lat, lon) "
                "VALUES (:id, now(), :id, 1, 1)"
            ),
            {"id": uuid.uuid4()},
        )
    return time.monotonic() - started


class TestPartitionLocks:
    """Dropping a partition waits for ACCESS EXCLUSIVE on positions behind any open reader,
    and every ingest insert queues behind it (an export held both for its whole download):
    it gives up instead. Creating one attaches it, which waits for no reader."""

    async def while_positions_are_read(
        self, ctx: WorkerContext, job: Any
    ) -> tuple[Any, float, float]:
        """``job``'s result, its seconds and an insert's, the insert sent while it waits."""
        held, release = asyncio.Event(), asyncio.Event()
        reader = asyncio.create_task(hold_positions(ctx, held, release))
        await held.wait()
        started = time.monotonic()
        running = asyncio.create_task(job)
        await asyncio.sleep(0.5)  # the DDL is queued for its lock by now
        inserted_s = await insert_fix(ctx)
        result = await running
        elapsed = time.monotonic() - started
        release.set()
        await reader
        return result, elapsed, inserted_s

    async def test_creating_waits_for_no_reader_and_stalls_no_insert(
        self, own_ctx: WorkerContext
    ) -> None:
        # CREATE TABLE … PARTITION OF took ACCESS EXCLUSIVE on positions: it waited behind
        # the reader, holding up the insert, until the lock timeout made it give up.
        await maintenance.maintain_partitions(own_ctx)  # all there but the one dropped next
        ahead = "positions_p" + (utcnow() + timedelta(days=2)).strftime("%Y%m%d")
        async with own_ctx.db.engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE {ahead}"))

        created, elapsed, inserted_s = await self.while_positions_are_read(
            own_ctx, maintenance.maintain_partitions(own_ctx)
        )

        assert (created, elapsed < 1.5, inserted_s < 0.5) == (1, True, True)
        indexes = text(
            "SELECT array_agg(am.amname ORDER BY am.amname), bool_or(i.indisprimary)"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = to_regclass(:name)"
        )
        async with own_ctx.db.engine.connect() as conn:
            of_parent = (await conn.execute(indexes, {"name": "positions"})).one()
            of_partition = (await conn.execute(indexes, {"name": ahead})).one()
        # Each of the parent's indexes, its primary key included, as a partition made in place.
        assert tuple(of_partition) == tuple(of_parent)
        assert of_parent[1] is True

    async def test_dropping_gives_up_instead_of_stalling_ingest(
        self, own_ctx: WorkerContext
    ) -> None:
        ancient = (utcnow() - timedelta(days=400)).date()
        async with unit_of_work(own_ctx.db) as session:
            await session.execute(
                text("SELECT milepost_ensure_position_partitions(:d, :d)"), {"d": ancient}
            )
        name = "positions_p" + ancient.strftime("%Y%m%d")

        outcome, elapsed, inserted_s = await self.while_positions_are_read(
            own_ctx, maintenance.apply_retention(own_ctx)
        )

        assert elapsed < 3.5
        assert inserted_s < 3.0
        assert (outcome.partitions_dropped, outcome.partitions_deferred) == ([], [name])
        assert (await maintenance.apply_retention(own_ctx)).partitions_dropped == [name]


def rejected(unique_id: str = "unknown", index: int = 0) -> dict[str, Any]:
    fix = {"device_id": unique_id, "fix_time": "2026-01-01T00:00:00Z", "lat": 1.0, "lon": 1.0}
    return {"index": index, "code": "unknown_device", "item": fix}


async def batches_of(ctx: WorkerContext, org_id: uuid.UUID) -> dict[uuid.UUID, IngestBatch]:
    async with unit_of_work(ctx.db) as session:
        rows = await session.scalars(select(IngestBatch).where(IngestBatch.org_id == org_id))
        return {batch.id: batch for batch in rows}


class TestIngestBatchRetention:
    """The batches' share of retention (the context deletes 2 rows a statement)."""

    async def test_expired_rejected_items_are_cleared_and_their_counts_kept(
        self, own_ctx: WorkerContext
    ) -> None:
        now = utcnow()
        eight_days_ago = now - timedelta(days=8)
        async with unit_of_work(own_ctx.db) as session:
            org = await make_organization(session, retention_days=30)
            expired = [
                (await make_batch(session, org.id, eight_days_ago, rejected_items=[rejected()])).id
                for _ in range(3)
            ]
            kept = await make_batch(
                session, org.id, now - timedelta(days=6), rejected_items=[rejected(index=4)]
            )
            clean = await make_batch(session, org.id, eight_days_ago)

        outcome = await maintenance.apply_retention(own_ctx)

        assert outcome.rejected_items_cleared == 3
        batches = await batches_of(own_ctx, org.id)
        for batch_id in expired:
            batch = batches[batch_id]
            assert (batch.rejected_items, batch.rejected_items_expire_at) == ([], None)
            assert batch.rejected == 1
            assert batch.errors == [{"index": 0, "code": "unknown_device", "message": "x"}]
        assert batches[kept.id].rejected_items == [rejected(index=4)]
        assert batches[kept.id].rejected_items_expire_at == kept.rejected_items_expire_at
        assert batches[clean.id].rejected == 0
        assert (await maintenance.apply_retention(own_ctx)).rejected_items_cleared == 0

    async def test_old_finished_batches_are_deleted_per_organization(
        self, own_ctx: WorkerContext
    ) -> None:
        now = utcnow()
        old, recent = now - timedelta(days=6), now - timedelta(days=4)
        async with unit_of_work(own_ctx.db) as session:
            short = await make_organization(session, retention_days=5)
            long = await make_organization(session, retention_days=30)
            for status in (BatchStatus.PROCESSED, BatchStatus.PROCESSED, BatchStatus.FAILED):
                await make_batch(session, short.id, old, status=status)
            unfinished = {
                (await make_batch(session, short.id, old, status=status)).id
                for status in (BatchStatus.RECEIVED, BatchStatus.QUEUED, BatchStatus.PROCESSING)
            }
            young = await make_batch(session, short.id, recent)
            longs = {(await make_batch(session, long.id, old)).id for _ in range(3)}

        outcome = await maintenance.apply_retention(own_ctx)

        assert outcome.rows_deleted["ingest_batches"] == 3
        assert set(await batches_of(own_ctx, short.id)) == {*unfinished, young.id}
        assert set(await batches_of(own_ctx, long.id)) == longs


class TestWebhookDeliveryRetention:
    async def test_old_finished_deliveries_are_deleted_and_pending_ones_kept(
        self, own_ctx: WorkerContext
    ) -> None:
        # Their payloads hold a position and the vehicle's name: they stayed forever.
        now = utcnow()
        old, recent = now - timedelta(days=100), now - timedelta(days=4)
        async with unit_of_work(own_ctx.db) as session:
            org = await make_organization(session, retention_days=5)
            for status in (DeliveryStatus.SUCCEEDED, DeliveryStatus.SUCCEEDED, DeliveryStatus.DEAD):
                await make_webhook_delivery(session, org, status, created_at=old)
            pending = await make_webhook_delivery(session, org, created_at=old)
            young = await make_webhook_delivery(
                session, org, DeliveryStatus.SUCCEEDED, created_at=recent
            )

        outcome = await maintenance.apply_retention(own_ctx)

        async with unit_of_work(own_ctx.db) as session:
            kept = await session.scalars(
                select(WebhookDelivery.id).where(WebhookDelivery.org_id == org.id)
            )
            assert set(kept) == {pending.id, young.id}
        assert outcome.rows_deleted["webhook_deliveries"] == 3
