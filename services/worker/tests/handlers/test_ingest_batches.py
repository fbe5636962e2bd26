"""Batch processing against Postgres: rows written, recomputation, idempotency, live events;
the reconciler's pick of the batches left behind."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select
from worker_support import (
    MemoryStore,
    at,
    base_time_s,
    expected_rows,
    golden_drive,
    rows,
    write_batch,
)

from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts.models import Alert, AlertType
from milepost_common.domain.devices.models import DeviceState
from milepost_common.domain.ingest_batches.models import BatchSource, BatchStatus, IngestBatch
from milepost_common.domain.webhooks.models import WebhookDelivery, WebhookEndpoint
from milepost_common.live import latest_positions_key, org_channel
from milepost_common.testing.factories import make_device, make_organization
from milepost_worker.handlers import ingest_batches
from milepost_worker.handlers.ingest_batches import process_batch, stale_batches
from milepost_worker.motion.machine import MICROS, Fix, MotionParams
from milepost_worker.rules.engine import RuleSpec
from milepost_worker.runtime import WorkerContext
from milepost_worker.timeutil import from_micros, to_micros, utcnow


async def status_of(session: AsyncSession, batch: IngestBatch) -> str:
    return str(
        (
            await session.execute(
                select(col(IngestBatch.status)).where(col(IngestBatch.id) == batch.id)
            )
        ).scalar_one()
    )


class TestProcessBatch:
    async def test_fixes_become_trips_stops_and_state(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        device = await make_device(session)
        fixes = golden_drive(base_time_s())
        first = await write_batch(session, device, fixes[:40])
        second = await write_batch(session, device, fixes[40:])
        await session.commit()
        for batch in (first, second):
            outcome = await process_batch(ctx, batch.id)
            assert outcome.status == "processed"
            assert await status_of(session, batch) == BatchStatus.PROCESSED
        t0 = fixes[0].t
        got = await rows(session, device)
        assert [(to_micros(s) - t0, e and to_micros(e) - t0) for s, e, *_ in got["trips"]] == [
            (290 * MICROS, 580 * MICROS)
        ]
        assert [(to_micros(s) - t0, e and to_micros(e) - t0) for s, e, *_ in got["stops"]] == [
            (0, 290 * MICROS),
            (580 * MICROS, None),
        ]
        state = await session.get(DeviceState, device.id, populate_existing=True)
        assert state is not None
        assert state.motion == "stopped"
        assert state.last_fix_time == from_micros(fixes[-1].t)
        assert state.watermark == from_micros(fixes[-1].t)

    async def test_a_redelivered_batch_changes_nothing(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        device = await make_device(session)
        batch = await write_batch(session, device, golden_drive(base_time_s()))
        await session.commit()
        assert (await process_batch(ctx, batch.id)).status == "processed"
        before = await rows(session, device)
        assert (await process_batch(ctx, batch.id)).status == "skipped"
        assert await rows(session, device) == before

    async def test_late_batches_give_the_in_order_result(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        device = await make_device(session)
        fixes = golden_drive(base_time_s())
        parts = [fixes[:25], fixes[25:50], fixes[50:]]
        batches = [await write_batch(session, device, part) for part in parts]
        await session.commit()
        for index in (2, 0, 1):
            await process_batch(ctx, batches[index].id)
        store = MemoryStore(MotionParams(), [])
        store.process(store.ingest(fixes))
        assert await rows(session, device) == expected_rows(store)

    async def test_live_events_after_commit(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        device = await make_device(session, plate="B-MP 42")
        fixes = golden_drive(base_time_s())[:4]
        fixes.append(at(40, 0, t0_s=base_time_s(), speed=32.449, accuracy=4.96, heading="n"))
        batch = await write_batch(session, device, fixes)
        await session.commit()
        await ctx.cache.set(latest_positions_key(device.org_id), b"cached")
        pubsub = ctx.cache.pubsub()
        await pubsub.subscribe(org_channel(device.org_id))
        await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        await process_batch(ctx, batch.id)
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        assert message is not None
        event = orjson.loads(message["data"])
        assert event["type"] == "position"
        assert event["vehicle_id"] == str(device.id)
        # The latest position's public shape, as GET /positions/latest answers it: named,
        # numbers rounded at the edge.
        last = fixes[-1]
        assert event["data"] == {
            "vehicle_id": str(device.id),
            "vehicle_name": device.name,
            "vehicle_plate": "B-MP 42",
            "fix_time": from_micros(last.t).isoformat().replace("+00:00", "Z"),
            "lat": last.lat,
            "lon": last.lon,
            "speed": 32.4,
            "course": None,
            "altitude": None,
            "accuracy": 5.0,
            "attributes": {"heading": "n"},
        }
        assert await ctx.cache.get(latest_positions_key(device.org_id)) is None


class TestAlertsReconciled:
    async def test_a_new_alert_goes_live_in_its_public_shape(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        device = await make_device(session, speed_limit_kmh=50.0)
        session.add(
            AlertRule(org_id=device.org_id, name="speeding", type=AlertType.OVERSPEED, params={})
        )
        t0 = base_time_s()
        fast = [at(10 * i, 250.0 * i, t0_s=t0, speed=90.449) for i in range(6)]
        batch = await write_batch(session, device, fast)
        await session.commit()
        pubsub = ctx.cache.pubsub()
        await pubsub.subscribe(org_channel(device.org_id))
        await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        assert (await process_batch(ctx, batch.id)).alerts_created == 1
        events = []
        while message := await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0):
            events.append(orjson.loads(message["data"]))
        await pubsub.aclose()  # type: ignore[no-untyped-call]

        alert = next(e["data"] for e in events if e["type"] == "alert")
        # As GET /alerts answers it: the vehicle's name, numbers rounded at the edge.
        assert alert["vehicle_name"] == device.name
        assert alert["details"]["max_speed"] == 90.4
        assert alert["occurred_at"] == from_micros(fast[0].t).isoformat().replace("+00:00", "Z")

    async def test_recompute_keeps_the_alert_id_and_acknowledgement(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        org = await make_organization(session)
        device = await make_device(session, org, speed_limit_kmh=50.0)
        rule = AlertRule(
            org_id=org.id, name="speeding", type=AlertType.OVERSPEED, params={"min_duration_s": 20}
        )
        session.add(rule)
        session.add(
            WebhookEndpoint(
                org_id=org.id,
                url="http://127.0.0.1:9/hook",
                secret_encrypted=ctx.box.encrypt("s"),
                event_types=["alert.created"],
            )
        )
        t0 = base_time_s()
        early = [at(t, 0, t0_s=t0, speed=10) for t in range(0, 100, 10)]
        fast = [at(200 + 10 * i, 200.0 * i, t0_s=t0, speed=90) for i in range(10)]
        late_batch = await write_batch(session, device, early)
        fast_batch = await write_batch(session, device, fast)
        await session.commit()
        first = await process_batch(ctx, fast_batch.id)
        assert first.alerts_created == 1
        assert len(first.deliveries) == 1
        alert = (
            await session.execute(select(Alert).where(col(Alert.device_id) == device.id))
        ).scalar_one()
        acked_at = from_micros(fast[0].t + 999)
        await session.execute(
            update(Alert).where(col(Alert.id) == alert.id).values(acknowledged_at=acked_at)
        )
        await session.commit()

        second = await process_batch(ctx, late_batch.id)
        assert second.recomputed_devices == 1
        assert second.alerts_created == 0
        assert second.deliveries == []
        again = (
            await session.execute(
                select(Alert)
                .where(col(Alert.device_id) == device.id)
                .execution_options(populate_existing=True)
            )
        ).scalar_one()
        assert (again.id, again.acknowledged_at) == (alert.id, acked_at)
        assert again.occurred_at == from_micros(fast[0].t)
        deliveries = (
            await session.execute(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(col(WebhookDelivery.org_id) == org.id)
            )
        ).scalar_one()
        assert deliveries == 1

    async def test_a_backlog_that_starts_the_episode_earlier_keeps_its_alert(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        # Back in coverage, the tracker sends its live fix first and its backlog after: the
        # backlog shows the same speeding episode began earlier.
        org = await make_organization(session)
        device = await make_device(session, org, speed_limit_kmh=50.0)
        session.add(AlertRule(org_id=org.id, name="speeding", type=AlertType.OVERSPEED, params={}))
        session.add(
            WebhookEndpoint(
                org_id=org.id,
                url="http://127.0.0.1:9/hook",
                secret_encrypted=ctx.box.encrypt("s"),
                event_types=["alert.created", "alert.ended"],
            )
        )
        t0 = base_time_s()
        fast = [at(10 * i, 250.0 * i, t0_s=t0, speed=90) for i in range(20)]
        live_batch = await write_batch(session, device, fast[10:])
        backlog_batch = await write_batch(session, device, fast[:10])
        await session.commit()
        assert (await process_batch(ctx, live_batch.id)).alerts_created == 1
        alert = (
            await session.execute(select(Alert).where(col(Alert.device_id) == device.id))
        ).scalar_one()
        acked_at = from_micros(fast[10].t + 999)
        await session.execute(
            update(Alert).where(col(Alert.id) == alert.id).values(acknowledged_at=acked_at)
        )
        await session.commit()

        backlog = await process_batch(ctx, backlog_batch.id)
        # One episode, one alert: the one the owner was told of and acknowledged, now
        # starting where the episode did; no second alert.created for it.
        assert (backlog.alerts_created, backlog.deliveries) == (0, [])
        again = (
            await session.execute(
                select(Alert)
                .where(col(Alert.device_id) == device.id)
                .execution_options(populate_existing=True)
            )
        ).scalar_one()
        assert (again.id, again.acknowledged_at) == (alert.id, acked_at)
        assert (again.occurred_at, again.lat, again.lon) == (
            from_micros(fast[0].t),
            fast[0].lat,
            fast[0].lon,
        )


@st.composite
def split_drives(draw: st.DrawFn) -> tuple[list[Fix], list[list[Fix]]]:
    t0 = base_time_s() - 20_000
    fixes: list[Fix] = []
    t, east = 0.0, 0.0
    for _ in range(draw(st.integers(2, 5))):
        moving = draw(st.booleans())
        for _ in range(draw(st.integers(5, 40))):
            t += draw(st.sampled_from([5.0, 10.0, 60.0]))
            east += 120.0 if moving else draw(st.floats(-10, 10))
            fixes.append(
                at(
                    t,
                    east,
                    t0_s=t0,
                    speed=50.0 if moving else 0.0,
                    battery=draw(st.sampled_from([50, 10])),
                )
            )
    order = draw(st.permutations(range(len(fixes))))
    cuts = sorted(draw(st.sets(st.integers(1, len(fixes) - 1), max_size=4)))
    shuffled = [fixes[i] for i in order]
    bounds = [0, *cuts, len(fixes)]
    return fixes, [shuffled[a:b] for a, b in itertools.pairwise(bounds)]


class TestOrderIndependenceInPostgres:
    @pytest.fixture(autouse=True)
    def small_chunks(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # A late fix's replay reads the device's fixes a few at a time here.
        monkeypatch.setattr(ingest_batches, "REPLAY_CHUNK", 7)

    @settings(
        max_examples=6, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
    )
    @given(split_drives())
    async def test_random_batches_in_random_order(
        self,
        ctx: WorkerContext,
        session: AsyncSession,
        drive: tuple[list[Fix], list[list[Fix]]],
    ) -> None:
        fixes, batches = drive
        org = await make_organization(session)
        device = await make_device(session, org)
        rule = AlertRule(
            org_id=org.id, name="battery", type=AlertType.LOW_BATTERY, params={"threshold_pct": 20}
        )
        session.add(rule)
        written = [await write_batch(session, device, part) for part in batches]
        await session.commit()
        random.Random(len(fixes)).shuffle(written)
        for batch in written:
            await process_batch(ctx, batch.id)
        store = MemoryStore(
            MotionParams(), [RuleSpec(str(rule.id), "low_battery", {"threshold_pct": 20})]
        )
        store.process(store.ingest(fixes))
        assert await rows(session, device) == expected_rows(store)


class TestReconcile:
    async def test_left_behind_batches_are_enqueued_again(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        org = await make_organization(session)
        now = utcnow()
        old = now - timedelta(minutes=30)

        def batch(status: BatchStatus, **fields: Any) -> IngestBatch:
            return IngestBatch(org_id=org.id, source=BatchSource.JSON, status=status, **fields)

        received = batch(BatchStatus.RECEIVED, received_at=old)
        queued = batch(BatchStatus.QUEUED, received_at=old, queued_at=old)
        fresh = batch(BatchStatus.RECEIVED)
        # Received long ago, but published again just now: not yet.
        republished = batch(BatchStatus.QUEUED, received_at=old, queued_at=now)
        expired = batch(
            BatchStatus.PROCESSING,
            received_at=old,
            processing_started_at=now - timedelta(seconds=90),
            lease_holder="host:1:dead",
            lease_expires_at=now - timedelta(seconds=60),
        )
        # Running far longer than a lease, and still renewing it.
        alive = batch(
            BatchStatus.PROCESSING,
            received_at=old,
            processing_started_at=now - timedelta(hours=1),
            lease_holder="host:2:alive",
            lease_expires_at=now + timedelta(seconds=20),
        )
        unleased = batch(
            BatchStatus.PROCESSING, received_at=old, processing_started_at=now - timedelta(hours=1)
        )
        done = batch(BatchStatus.PROCESSED, received_at=old)
        failed = batch(BatchStatus.FAILED, received_at=old)
        everything = [received, queued, fresh, republished, expired, alive, unleased, done, failed]
        session.add_all(everything)
        await session.commit()

        stale = await stale_batches(ctx)

        assert {received.id, queued.id} <= set(stale.pending)
        assert {expired.id, unleased.id} <= set(stale.lease_expired)
        ours = {b.id for b in everything}
        assert not {fresh.id, republished.id, alive.id, done.id, failed.id} & (
            set(stale.pending) | set(stale.lease_expired)
        )
        for row in (received, queued, expired):
            await session.refresh(row)
            assert row.status == BatchStatus.QUEUED
            assert row.queued_at is not None
            assert row.queued_at > old
            assert (row.lease_holder, row.lease_expires_at) == (None, None)
        # Sent again as of now: the next runs leave them alone for a while.
        again = await stale_batches(ctx)
        assert not ours & (set(again.pending) | set(again.lease_expired))
