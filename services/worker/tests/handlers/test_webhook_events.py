"""Every webhook event type, written by the real handlers (batch processing, beat's offline
detection, a transfer): what each sends, that each payload is the documented one, and that a
recomputation or a second run sends nothing again."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select
from worker_support import at, base_time_s, golden_drive, latlon, write_batch

from milepost_common.domain.alert_rules import service as alert_rule_service
from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alert_rules.schemas import AlertRuleUpdate
from milepost_common.domain.alerts.models import Alert, AlertType
from milepost_common.domain.devices import tenure as device_tenure
from milepost_common.domain.devices.models import Device, DeviceState
from milepost_common.domain.geofences.models import Geofence
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.trips.models import Stop, Trip
from milepost_common.domain.webhooks import delivery as webhook_delivery
from milepost_common.domain.webhooks import events as webhook_events
from milepost_common.domain.webhooks.models import WebhookDelivery, WebhookEndpoint
from milepost_common.domain.webhooks.schemas import WebhookEventType
from milepost_common.testing.factories import (
    make_device,
    make_operator,
    make_organization,
    make_user,
    principal_for,
)
from milepost_worker.handlers.ingest_batches import BatchOutcome, process_batch
from milepost_worker.handlers.maintenance import detect_offline
from milepost_worker.motion.machine import Fix
from milepost_worker.runtime import WorkerContext
from milepost_worker.timeutil import from_micros, utcnow


async def subscribe(
    session: AsyncSession, ctx: WorkerContext, org: Organization, *types: WebhookEventType
) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(
        org_id=org.id,
        url="http://127.0.0.1:9/hook",
        secret_encrypted=ctx.box.encrypt("s"),
        event_types=[t.value for t in types],
    )
    session.add(endpoint)
    await session.flush()
    return endpoint


async def process(
    ctx: WorkerContext, session: AsyncSession, device: Device, fixes: list[Fix]
) -> BatchOutcome:
    batch = await write_batch(session, device, fixes)
    await session.commit()
    outcome = await process_batch(ctx, batch.id)
    assert outcome.status == "processed"
    return outcome


async def sent(session: AsyncSession, org: Organization) -> list[dict[str, Any]]:
    """The organization's delivery payloads in the order written, each checked against its
    documented model (the api's OpenAPI ``webhooks``)."""
    rows = (
        await session.execute(
            select(WebhookDelivery)
            .where(col(WebhookDelivery.org_id) == org.id)
            .order_by(col(WebhookDelivery.created_at), col(WebhookDelivery.event_type))
            .execution_options(populate_existing=True)
        )
    ).scalars()
    payloads = []
    for row in rows:
        model, _ = webhook_events.EVENT_MODELS[WebhookEventType(row.event_type)]
        model.model_validate(row.payload)
        assert row.payload["id"] == str(row.event_id)
        assert row.payload["type"] == row.event_type
        assert row.payload["org_id"] == str(org.id)
        payloads.append(row.payload)
    return payloads


def iso(fix: Fix) -> str:
    return from_micros(fix.t).isoformat().replace("+00:00", "Z")


def types_of(payloads: list[dict[str, Any]]) -> list[str]:
    return sorted(p["type"] for p in payloads)


class TestTripsAndStops:
    async def test_a_drive_sends_each_start_and_end_once(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        org = await make_organization(session)
        device = await make_device(session, org, name="Van 7")
        await subscribe(
            session,
            ctx,
            org,
            WebhookEventType.TRIP_STARTED,
            WebhookEventType.TRIP_ENDED,
            WebhookEventType.STOP_STARTED,
        )
        fixes = golden_drive(base_time_s())

        first = await process(ctx, session, device, fixes[:40])
        assert types_of(await sent(session, org)) == ["stop.started", "trip.started"]
        second = await process(ctx, session, device, fixes[40:])

        payloads = await sent(session, org)
        assert (len(first.deliveries), len(second.deliveries)) == (2, 2)
        assert types_of(payloads) == ["stop.started", "stop.started", "trip.ended", "trip.started"]
        trip = (await session.execute(select(Trip).where(Trip.device_id == device.id))).scalar_one()
        by_type = {p["type"]: p["data"] for p in payloads}
        assert by_type["trip.started"]["id"] == by_type["trip.ended"]["id"] == str(trip.id)
        assert by_type["trip.started"]["end_time"] is None
        assert by_type["trip.ended"]["end_time"] is not None
        assert by_type["trip.ended"]["reason"] == "stopped"
        assert by_type["trip.ended"]["vehicle_name"] == "Van 7"
        stops = (await session.execute(select(Stop).where(Stop.device_id == device.id))).scalars()
        assert sorted(p["data"]["id"] for p in payloads if p["type"] == "stop.started") == sorted(
            str(s.id) for s in stops
        )

    async def test_a_late_fix_that_rewrites_the_trip_sends_nothing_again(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        org = await make_organization(session)
        device = await make_device(session, org)
        await subscribe(session, ctx, org, *WebhookEventType)
        t0 = base_time_s()
        await process(ctx, session, device, golden_drive(t0)[:45])
        before = await sent(session, org)
        trip = (await session.execute(select(Trip).where(Trip.device_id == device.id))).scalar_one()
        trip_id, distance = trip.id, trip.distance_m

        # A detour in the middle of the open trip, reported late.
        outcome = await process(ctx, session, device, [at(355, 495.0, 40.0, t0_s=t0)])

        assert outcome.recomputed_devices == 1
        assert outcome.deliveries == []
        assert await sent(session, org) == before
        again = await session.get(Trip, trip_id, populate_existing=True)
        assert again is not None
        assert again.distance_m > distance  # rewritten, same start, same id

    async def test_an_event_written_again_is_one_delivery(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        org = await make_organization(session)
        device = await make_device(session, org)
        await subscribe(session, ctx, org, WebhookEventType.TRIP_STARTED)
        await process(ctx, session, device, golden_drive(base_time_s())[:45])
        trip = (await session.execute(select(Trip).where(Trip.device_id == device.id))).scalar_one()
        # A trip a recomputation removed and wrote back has another row id, the same start.
        rewritten = Trip(**{**trip.model_dump(), "id": uuid.uuid4()})

        again = await webhook_delivery.create_deliveries(
            session, [webhook_events.trip_started(rewritten, device.name)], utcnow()
        )

        assert again == []
        assert len(await sent(session, org)) == 1


class TestAlertEnded:
    async def test_an_overspeed_episode_that_ends(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        org = await make_organization(session)
        device = await make_device(session, org, speed_limit_kmh=50.0)
        session.add(
            AlertRule(
                org_id=org.id, name="fast", type=AlertType.OVERSPEED, params={"min_duration_s": 20}
            )
        )
        await subscribe(
            session, ctx, org, WebhookEventType.ALERT_CREATED, WebhookEventType.ALERT_ENDED
        )
        t0 = base_time_s()
        fast = [at(10 * i, 250.0 * i, t0_s=t0, speed=90) for i in range(6)]
        slow = [at(60 + 10 * i, 1500.0 + 20 * i, t0_s=t0, speed=20) for i in range(3)]
        await process(ctx, session, device, fast)
        assert types_of(await sent(session, org)) == ["alert.created"]

        await process(ctx, session, device, slow)
        # A late fix inside the episode recomputes it: the alert is rewritten, not ended again.
        await process(ctx, session, device, [at(55, 1400.0, t0_s=t0, speed=95)])

        payloads = await sent(session, org)
        assert types_of(payloads) == ["alert.created", "alert.ended"]
        ended = payloads[1]["data"]
        assert ended["id"] == payloads[0]["data"]["id"]
        assert ended["details"]["end_time"] is not None
        assert ended["vehicle_name"] == device.name

    async def test_a_rule_disabled_and_enabled_again_between_batches_ends_its_alert_once(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        # The device's state kept the rule's open episode across the off-and-on: the next
        # batch reopened the ended alert, and receivers got a second alert.ended for it.
        org = await make_organization(session)
        device = await make_device(session, org, speed_limit_kmh=50.0)
        rule = AlertRule(
            org_id=org.id, name="fast", type=AlertType.OVERSPEED, params={"min_duration_s": 20}
        )
        session.add(rule)
        await subscribe(
            session, ctx, org, WebhookEventType.ALERT_CREATED, WebhookEventType.ALERT_ENDED
        )
        manager = principal_for(await make_user(session, org))
        t0 = base_time_s()
        await process(
            ctx, session, device, [at(10 * i, 250.0 * i, t0_s=t0, speed=90) for i in range(6)]
        )
        for enabled in (False, True):
            await alert_rule_service.update_alert_rule(
                session, manager, rule.id, AlertRuleUpdate(enabled=enabled)
            )
        await session.commit()

        await process(
            ctx,
            session,
            device,
            [at(60 + 10 * i, 1500.0 + 250 * i, t0_s=t0, speed=90) for i in range(4)],
        )
        await process(
            ctx,
            session,
            device,
            [at(100 + 10 * i, 2500.0 + 20 * i, t0_s=t0, speed=20) for i in range(3)],
        )

        payloads = await sent(session, org)
        # The episode cut by the off-and-on ended at the last fix before it; the speeding
        # after it is an episode of its own, ended when the vehicle slowed down.
        alerts = list(dict.fromkeys(p["data"]["id"] for p in payloads))
        events = [
            (p["type"], alerts.index(p["data"]["id"]), p["data"]["details"]["end_time"])
            for p in payloads
        ]
        assert sorted(events, key=str) == [
            ("alert.created", 0, None),
            ("alert.created", 1, None),
            ("alert.ended", 0, iso(at(50, 0, t0_s=t0))),
            ("alert.ended", 1, iso(at(100, 0, t0_s=t0))),
        ]

    async def test_a_geofence_dwell_that_ends(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        org = await make_organization(session)
        device = await make_device(session, org)
        lat, lon = latlon(2000.0)
        depot = Geofence(
            org_id=org.id,
            name="depot",
            radius_m=300.0,
            geometry={"type": "Point", "coordinates": [lon, lat]},
        )
        session.add(depot)
        await session.flush()
        session.add(
            AlertRule(
                org_id=org.id,
                name="in the depot",
                type=AlertType.GEOFENCE_ENTER,
                params={"geofence_id": str(depot.id)},
            )
        )
        await subscribe(session, ctx, org, WebhookEventType.ALERT_ENDED)
        t0 = base_time_s()
        # Outside, into the depot for ten minutes, out again.
        fixes = [at(0, 0, t0_s=t0), at(100, 2000.0, t0_s=t0), at(700, 2000.0, t0_s=t0)]
        fixes.append(at(800, 4000.0, t0_s=t0))

        await process(ctx, session, device, fixes)

        payloads = await sent(session, org)
        assert types_of(payloads) == ["alert.ended"]
        data = payloads[0]["data"]
        assert data["type"] == "geofence_enter"
        assert data["occurred_at"] == from_micros(fixes[1].t).isoformat().replace("+00:00", "Z")
        assert data["details"]["end_time"] == (
            from_micros(fixes[3].t).isoformat().replace("+00:00", "Z")
        )


class TestOfflineAndOnline:
    async def test_once_per_silence(self, ctx: WorkerContext, session: AsyncSession) -> None:
        org = await make_organization(session)
        device = await make_device(session, org, name="Truck 3")
        await subscribe(
            session, ctx, org, WebhookEventType.DEVICE_OFFLINE, WebhookEventType.DEVICE_ONLINE
        )
        last_fix = utcnow().replace(microsecond=0) - timedelta(hours=1)
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

        first, second = await detect_offline(ctx), await detect_offline(ctx)
        assert (first.devices_offline, second.devices_offline) == (1, 0)
        t0 = utcnow().timestamp() - 60
        back = await process(ctx, session, device, [at(0, 0, t0_s=t0), at(10, 5, t0_s=t0)])
        again = await process(ctx, session, device, [at(20, 10, t0_s=t0)])

        payloads = await sent(session, org)
        assert types_of(payloads) == ["device.offline", "device.online"]
        assert (len(back.deliveries), again.deliveries) == (1, [])
        offline, online = payloads
        assert offline["data"]["last_fix_time"] == last_fix.isoformat().replace("+00:00", "Z")
        assert offline["data"]["vehicle_name"] == "Truck 3"
        assert offline["data"]["offline_after_s"] == 600
        assert online["data"]["offline_since"] == offline["data"]["last_fix_time"]
        state = await session.get(DeviceState, device.id, populate_existing=True)
        assert state is not None
        assert state.offline_since is None
        assert (await detect_offline(ctx)).devices_offline == 0

    async def test_an_old_fix_does_not_bring_a_vehicle_back(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        org = await make_organization(session)
        device = await make_device(session, org)
        await subscribe(session, ctx, org, WebhookEventType.DEVICE_ONLINE)
        t0 = base_time_s()
        await process(ctx, session, device, [at(0, 0, t0_s=t0)])
        assert (await detect_offline(ctx)).devices_offline == 1

        outcome = await process(ctx, session, device, [at(60, 0, t0_s=t0)])

        assert outcome.deliveries == []
        state = await session.get(DeviceState, device.id, populate_existing=True)
        assert state is not None
        assert state.offline_since == from_micros(at(0, 0, t0_s=t0).t)

    async def test_a_suspended_organization_is_not_told_its_vehicles_went_silent(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        # Its keys are refused, so every vehicle falls silent: each was reported offline to
        # it (an alert and a device.offline each), ten minutes after the suspension.
        org = await make_organization(session, suspended_at=utcnow() - timedelta(hours=1))
        device = await make_device(session, org)
        await subscribe(session, ctx, org, WebhookEventType.DEVICE_OFFLINE)
        session.add(
            AlertRule(org_id=org.id, name="silent", type=AlertType.OFFLINE, params={"after_s": 60})
        )
        session.add(
            DeviceState(
                device_id=device.id, org_id=org.id, last_fix_time=utcnow() - timedelta(hours=1)
            )
        )
        await session.commit()

        outcome = await detect_offline(ctx)

        assert (outcome.devices_offline, outcome.alerts_created) == (0, 0)
        assert await sent(session, org) == []


class TestTransfer:
    async def test_the_open_trip_ends_with_reason_transferred(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        old, new = await make_organization(session), await make_organization(session)
        device = await make_device(session, old)
        await subscribe(session, ctx, old, *WebhookEventType)
        await subscribe(session, ctx, new, *WebhookEventType)
        await process(ctx, session, device, golden_drive(base_time_s())[:45])
        operator = principal_for(await make_operator(session))

        await device_tenure.transfer_device(session, operator, device, new)
        await session.commit()
        outcome = await detect_offline(ctx)

        payloads = await sent(session, old)
        assert types_of(payloads) == ["stop.started", "trip.ended", "trip.started"]
        ended = next(p["data"] for p in payloads if p["type"] == "trip.ended")
        trip = (await session.execute(select(Trip).where(Trip.device_id == device.id))).scalar_one()
        assert ended["id"] == str(trip.id)
        assert ended["reason"] == "transferred"
        assert trip.end_time is not None
        assert ended["end_time"] == trip.end_time.isoformat().replace("+00:00", "Z")
        assert ended["vehicle_name"] is None
        assert outcome.devices_offline == 0
        assert await sent(session, new) == []

    async def test_an_open_episode_ends_with_the_tenure(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        # Speeding when transferred: the old organization's overspeed alert stayed open for
        # good (the worker never touches an earlier tenure's rows) and alert.ended never came.
        old, new = await make_organization(session), await make_organization(session)
        device = await make_device(session, old)
        session.add(
            AlertRule(
                org_id=old.id, name="fast", type=AlertType.OVERSPEED, params={"limit_kmh": 20}
            )
        )
        await subscribe(session, ctx, old, WebhookEventType.ALERT_ENDED)
        await process(ctx, session, device, golden_drive(base_time_s())[:45])
        [open_alert] = (await session.scalars(select(Alert).where(Alert.org_id == old.id))).all()
        assert open_alert.details["end_time"] is None
        state = await session.get(DeviceState, device.id)
        assert state is not None
        assert state.last_fix_time is not None
        last_fix = state.last_fix_time

        await device_tenure.transfer_device(
            session, principal_for(await make_operator(session)), device, new
        )
        await session.commit()

        [ended] = await sent(session, old)
        assert ended["type"] == "alert.ended"
        assert ended["data"]["id"] == str(open_alert.id)
        assert ended["data"]["details"]["end_time"] == last_fix.isoformat().replace("+00:00", "Z")
