"""Every alert type, stored through the batch handler (and beat's offline detection)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select
from worker_support import LAT0, LON0, at, base_time_s, latlon, write_batch

from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts.models import Alert, AlertType
from milepost_common.domain.devices.models import DeviceState
from milepost_common.domain.geofences.models import Geofence
from milepost_common.domain.positions import service as position_service
from milepost_common.domain.trips.models import Stop, Trip
from milepost_common.testing.factories import make_device, make_organization
from milepost_worker.handlers.ingest_batches import process_batch
from milepost_worker.handlers.maintenance import detect_offline
from milepost_worker.runtime import WorkerContext
from milepost_worker.timeutil import from_micros, utcnow


async def stored(session: AsyncSession, device_id: object) -> dict[str, list[Alert]]:
    alerts = (
        (
            await session.execute(
                select(Alert)
                .where(col(Alert.device_id) == device_id)
                .order_by(col(Alert.occurred_at))
            )
        )
        .scalars()
        .all()
    )
    by_type: dict[str, list[Alert]] = {}
    for alert in alerts:
        by_type.setdefault(str(alert.type), []).append(alert)
    return by_type


class TestEveryAlertType:
    async def test_a_drive_raises_each_fix_derived_alert(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        org = await make_organization(session, default_speed_limit_kmh=80.0)
        device = await make_device(session, org)
        lat, lon = latlon(3000.0)
        circle = Geofence(
            org_id=org.id,
            name="depot",
            radius_m=300.0,
            geometry={"type": "Point", "coordinates": [lon, lat]},
        )
        d = 0.002
        square = Geofence(
            org_id=org.id,
            name="yard",
            geometry={
                "type": "Polygon",
                "coordinates": [
                    [
                        [LON0 - d, LAT0 - d],
                        [LON0 + d, LAT0 - d],
                        [LON0 + d, LAT0 + d],
                        [LON0 - d, LAT0 + d],
                        [LON0 - d, LAT0 - d],
                    ]
                ],
            },
        )
        session.add_all([circle, square])
        await session.flush()
        rules: dict[AlertType, dict[str, Any]] = {
            AlertType.OVERSPEED: {"min_duration_s": 10},
            AlertType.GEOFENCE_ENTER: {"geofence_id": str(circle.id), "min_dwell_s": 20},
            AlertType.GEOFENCE_EXIT: {"geofence_id": str(square.id)},
            AlertType.IDLE: {"min_duration_s": 120},
            AlertType.LOW_BATTERY: {"threshold_pct": 15},
        }
        session.add_all(
            [AlertRule(org_id=org.id, name=str(t), type=t, params=p) for t, p in rules.items()]
        )
        t0 = base_time_s()
        # In the yard, then 3 km east at 108 km/h into the depot, idling there; battery drains.
        fixes = [at(t, 0, t0_s=t0, speed=0, ignition=False, battery=60) for t in range(0, 60, 10)]
        fixes += [
            at(60 + 10 * i, 300.0 * i, t0_s=t0, speed=108, ignition=True, battery=40)
            for i in range(1, 11)
        ]
        fixes += [
            at(160 + 10 * i, 3000.0, t0_s=t0, speed=0, ignition=True, battery=12)
            for i in range(1, 60)
        ]
        batch = await write_batch(session, device, fixes)
        await session.commit()
        await process_batch(ctx, batch.id)

        alerts = await stored(session, device.id)
        assert sorted(alerts) == sorted(str(t) for t in rules)
        assert all(len(found) == 1 for found in alerts.values())
        overspeed = alerts["overspeed"][0]
        assert overspeed.occurred_at == from_micros(fixes[6].t)
        assert overspeed.details["limit_kmh"] == 80.0
        assert overspeed.details["max_speed"] == 108
        assert overspeed.details["end_time"] is not None
        assert alerts["geofence_exit"][0].occurred_at == from_micros(fixes[6].t)
        enter = alerts["geofence_enter"][0]
        assert enter.details["geofence_id"] == str(circle.id)
        assert alerts["low_battery"][0].details == {"battery_pct": 12, "threshold_pct": 15}
        assert alerts["idle"][0].details["end_time"] is None

    async def test_idling_starts_with_the_stop_or_when_the_ignition_came_on(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        # The motion rule knows a stop only min_duration (180 s) after it began: idling
        # counted from then, so each idle alert started 3 minutes after the stop it was in
        # and said it lasted 3 minutes less. It now starts with the stop, or when the ignition
        # came on during it, and where the stop is.
        org = await make_organization(session)
        device = await make_device(session, org)
        session.add(
            AlertRule(
                org_id=org.id, name="idle", type=AlertType.IDLE, params={"min_duration_s": 120}
            )
        )
        t0 = base_time_s()
        drive = [at(10 * i, 300.0 * i, t0_s=t0, speed=108, ignition=True) for i in range(10)]
        parked = [at(100 + 10 * i, 2700.0, t0_s=t0, speed=0, ignition=True) for i in range(1, 60)]
        drive_off = [
            at(700 + 10 * i, 2700.0 + 300 * i, t0_s=t0, ignition=True) for i in range(1, 5)
        ]
        # Parked again with the engine off; started 5 minutes later.
        second = [at(740 + 10 * i, 3900.0, t0_s=t0, speed=0, ignition=i > 30) for i in range(1, 60)]
        batch = await write_batch(session, device, drive + parked + drive_off + second)
        await session.commit()
        await process_batch(ctx, batch.id)

        stops = (
            await session.scalars(
                select(Stop).where(col(Stop.device_id) == device.id).order_by(col(Stop.start_time))
            )
        ).all()
        idle = (await stored(session, device.id))["idle"]
        assert [(a.occurred_at, a.lat, a.lon) for a in idle] == [
            (stops[1].start_time, stops[1].lat, stops[1].lon),
            (from_micros(second[30].t), stops[2].lat, stops[2].lon),
        ]

    async def test_a_gps_outlier_makes_no_trip_and_no_alert(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        # Parked; one fix 300 km away 10 s later with no speed reported; parked again. The
        # outlier made a 20 s trip of 600 km at 107,984 km/h and an overspeed alert saying so.
        org = await make_organization(session, default_speed_limit_kmh=80.0)
        device = await make_device(session, org)
        session.add(AlertRule(org_id=org.id, name="fast", type=AlertType.OVERSPEED, params={}))
        t0 = base_time_s()
        fixes = [at(10 * i, 0, t0_s=t0) for i in range(30)]
        fixes += [at(300, 300_000.0, t0_s=t0)]
        fixes += [at(310 + 10 * i, 0, t0_s=t0) for i in range(30)]
        batch = await write_batch(session, device, fixes)
        await session.commit()
        await process_batch(ctx, batch.id)

        trips = (await session.scalars(select(Trip).where(col(Trip.device_id) == device.id))).all()
        assert ([t.distance_m for t in trips], await stored(session, device.id)) == ([], {})
        # The outlier stays in the position history, as sent.
        history = await position_service.list_fixes_after(session, device.id, org.id, None, None)
        assert len(history) == len(fixes)

    async def test_offline_once_per_silence(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        org = await make_organization(session)
        device = await make_device(session, org)
        session.add(
            AlertRule(org_id=org.id, name="silent", type=AlertType.OFFLINE, params={"after_s": 600})
        )
        last_fix = utcnow() - timedelta(hours=1)
        session.add(
            DeviceState(
                device_id=device.id,
                org_id=org.id,
                last_fix_time=last_fix,
                last_lat=52.0,
                last_lon=13.0,
            )
        )
        await session.commit()
        first = await detect_offline(ctx)
        second = await detect_offline(ctx)
        assert (first.alerts_created, second.alerts_created) == (1, 0)
        alert = (await stored(session, device.id))["offline"][0]
        assert alert.occurred_at == last_fix + timedelta(seconds=600)
        assert (alert.lat, alert.lon) == (52.0, 13.0)
