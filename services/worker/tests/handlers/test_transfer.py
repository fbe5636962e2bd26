"""Device transfer: each organization's timeline stays its own (DESIGN.md "Device transfer").

A transfer ends the old tenure, and whatever the new organization then sends, in order or
late, the worker reads and rewrites only rows of the new tenure: the old organization's
trips, stops, alerts, checkpoints and positions stay byte for byte as they were.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select
from worker_support import at, golden_drive, write_batch

from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts import service as alert_service
from milepost_common.domain.alerts.models import Alert, AlertType
from milepost_common.domain.devices import tenure as device_tenure
from milepost_common.domain.devices.models import Device, DeviceState
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.trips.models import Stop, Trip
from milepost_common.testing.factories import (
    make_device,
    make_operator,
    make_organization,
    principal_for,
)
from milepost_worker.handlers.ingest_batches import process_batch
from milepost_worker.motion.machine import Fix
from milepost_worker.runtime import WorkerContext
from milepost_worker.timeutil import from_micros, utcnow

_TABLES = ("trips", "stops", "alerts", "motion_checkpoints", "positions")


async def snapshot(session: AsyncSession, org_id: uuid.UUID) -> dict[str, list[str]]:
    """Every row the organization holds in the worker's tables, each as its full text."""
    out = {}
    for table in _TABLES:
        result = await session.execute(
            text(f"SELECT t::text FROM {table} t WHERE org_id = :org ORDER BY t::text"),  # noqa: S608 - fixed names
            {"org": org_id},
        )
        out[table] = list(result.scalars())
    return out


async def speeding_rule(session: AsyncSession, org: Organization) -> AlertRule:
    rule = AlertRule(
        org_id=org.id,
        name="speeding",
        type=AlertType.OVERSPEED,
        params={"limit_kmh": 20, "min_duration_s": 20},
    )
    session.add(rule)
    await session.flush()
    return rule


async def transfer(session: AsyncSession, device: Device, target: Organization) -> Device:
    operator = principal_for(await make_operator(session))
    moved = await device_tenure.transfer_device(session, operator, device, target)
    await session.commit()
    return moved


async def process(ctx: WorkerContext, session: AsyncSession, device: Any, fixes: list[Fix]) -> None:
    batch = await write_batch(session, device, fixes)
    await session.commit()
    assert (await process_batch(ctx, batch.id)).status == "processed"


def drive_from(t0_s: float) -> list[Fix]:
    return golden_drive(t0_s)


class TestTransferDevice:
    async def test_mid_trip_ends_the_old_trip_at_its_last_fix_and_starts_empty(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        old, new = await make_organization(session), await make_organization(session)
        old_id, new_id = old.id, new.id
        device = await make_device(session, old)
        fixes = drive_from(time.time() - 2_000)
        await process(ctx, session, device, fixes[:45])  # parked, then 15 legs into the drive
        [open_trip_id] = (
            await session.execute(select(col(Trip.id)).where(col(Trip.end_time).is_(None)))
        ).scalars()
        device_id = device.id

        await transfer(session, device, new)

        session.expire_all()
        trip = await session.get(Trip, open_trip_id)
        assert trip is not None
        assert trip.org_id == old_id
        assert trip.end_time is not None
        assert abs(trip.end_time - from_micros(fixes[44].t)) < timedelta(milliseconds=1)
        open_stops = (await session.execute(select(Stop).where(col(Stop.end_time).is_(None)))).all()
        assert open_stops == []
        state = await session.get(DeviceState, device_id)
        assert state is not None
        assert (state.org_id, state.last_fix_time, state.machine, state.watermark) == (
            new_id,
            None,
            {},
            None,
        )
        moved = await session.get(Device, device_id)
        assert moved is not None
        assert moved.assigned_at is not None
        assert moved.assigned_at > from_micros(fixes[44].t)

    async def test_the_new_organizations_timeline_starts_from_nothing(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        old, new = await make_organization(session), await make_organization(session)
        device = await make_device(session, old)
        await process(ctx, session, device, drive_from(time.time() - 2_000)[:45])
        await transfer(session, device, new)

        start = time.time() + 1
        await process(ctx, session, device, drive_from(start))

        trips = (await session.execute(select(Trip).where(col(Trip.org_id) == new.id))).scalars()
        assert [
            (t.start_time - from_micros(round(start * 1e6))).total_seconds() for t in trips
        ] == [290.0]
        stops = list(
            (await session.execute(select(Stop).where(col(Stop.org_id) == new.id))).scalars()
        )
        # Its first stop starts at its own first fix, not at the old organization's last.
        assert min(s.start_time for s in stops) == from_micros(round(start * 1e6))

    async def test_a_late_fix_for_the_new_organization_leaves_the_old_rows_byte_identical(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        old, new = await make_organization(session), await make_organization(session)
        await speeding_rule(session, old)
        await speeding_rule(session, new)
        device = await make_device(session, old)
        await process(ctx, session, device, drive_from(time.time() - 3_000))
        moved = await transfer(session, device, new)
        before = await snapshot(session, old.id)
        assert all(before[table] for table in ("trips", "alerts", "motion_checkpoints"))
        assert moved.assigned_at is not None
        tenure_s = moved.assigned_at.timestamp()
        drive = drive_from(tenure_s + 100)
        await process(ctx, session, device, drive[10:])
        # Late: before everything the new organization sent, still inside its tenure.
        await process(ctx, session, device, [at(t, 0, t0_s=tenure_s) for t in (0, 10, 20)])
        await process(ctx, session, device, drive[:10])

        assert await snapshot(session, old.id) == before
        new_trips = list(
            (await session.execute(select(Trip).where(col(Trip.org_id) == new.id))).scalars()
        )
        assert len(new_trips) == 1
        assert new_trips[0].start_time >= moved.assigned_at
        new_alerts = list(
            (await session.execute(select(Alert).where(col(Alert.org_id) == new.id))).scalars()
        )
        assert len(new_alerts) == 1

    async def test_back_and_forth_keeps_each_tenure_apart(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        first, second = await make_organization(session), await make_organization(session)
        await speeding_rule(session, first)
        device = await make_device(session, first)
        await process(ctx, session, device, drive_from(time.time() - 3_000))
        moved = await transfer(session, device, second)
        first_tenure = await snapshot(session, first.id)
        assert moved.assigned_at is not None
        await process(ctx, session, device, drive_from(moved.assigned_at.timestamp() + 1))

        back = await transfer(session, device, first)
        second_tenure = await snapshot(session, second.id)
        assert second_tenure["trips"]
        assert back.assigned_at is not None
        again = drive_from(back.assigned_at.timestamp() + 50)
        await process(ctx, session, device, again[20:])
        await process(ctx, session, device, again[:20])  # late: a recomputation

        assert await snapshot(session, second.id) == second_tenure
        now_first = await snapshot(session, first.id)
        for table in _TABLES:
            # The first tenure's rows are all still there, unchanged, beside the third's.
            assert set(first_tenure[table]) <= set(now_first[table]), table
        trips = list(
            (await session.execute(select(Trip).where(col(Trip.org_id) == first.id))).scalars()
        )
        assert len(trips) == 2
        alerts = list(
            (await session.execute(select(Alert).where(col(Alert.org_id) == first.id))).scalars()
        )
        assert len(alerts) == 2

    async def test_no_offline_alert_for_the_new_organization_from_the_old_ones_last_fix(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        old, new = await make_organization(session), await make_organization(session)
        session.add(
            AlertRule(org_id=new.id, name="silent", type=AlertType.OFFLINE, params={"after_s": 60})
        )
        device = await make_device(session, old)
        await process(ctx, session, device, drive_from(time.time() - 3_000)[:5])
        await transfer(session, device, new)

        created = await alert_service.record_offline_alerts(session, utcnow())

        assert created == []
