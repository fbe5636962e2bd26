"""What a batch's replays make of the stored rows, handed to the domain: trips and stops to
``trips.service.materialize_segments``, fix-derived alerts to
``alerts.service.reconcile_alerts`` (each reconciles the rows of its replays' scopes and
derives the webhook events of what changed), converted here from the replay's microseconds
to the domain's plain values.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.alerts import service as alert_service
from milepost_common.domain.alerts.models import Alert
from milepost_common.domain.devices import state as device_state
from milepost_common.domain.devices.models import Device, DeviceState
from milepost_common.domain.trips import service as trip_service
from milepost_common.domain.webhooks import events as webhook_events
from milepost_worker import timeline
from milepost_worker.motion.machine import StopSegment, TripSegment
from milepost_worker.rules.engine import AlertOut, RuleSpec
from milepost_worker.timeutil import from_micros


@dataclass(slots=True)
class DeviceWork:
    device: Device
    tenure: trip_service.Tenure
    state: DeviceState
    result: timeline.Replay
    start: timeline.Snapshot | None
    rules: list[RuleSpec]
    resumed: bool  # continued from the device's latest state (no late fix)


@dataclass(slots=True)
class Written:
    """New alerts, and the webhook events of every change (new alerts' included)."""

    created_alerts: list[Alert] = field(default_factory=list)
    events: list[webhook_events.Event] = field(default_factory=list)


def _moment(t: int | None) -> datetime | None:
    return from_micros(t) if t is not None else None


def _trip_span(trip: TripSegment) -> trip_service.TripSpan:
    return trip_service.TripSpan(
        start_time=from_micros(trip.start_t),
        end_time=from_micros(trip.end_t) if trip.closed else None,
        start_lat=trip.start_lat,
        start_lon=trip.start_lon,
        end_lat=trip.end_lat,
        end_lon=trip.end_lon,
        distance_m=trip.distance_m,
        duration_s=trip.duration_s,
        avg_speed=trip.avg_speed,
        max_speed=trip.max_speed,
    )


def _stop_span(stop: StopSegment) -> trip_service.StopSpan:
    return trip_service.StopSpan(
        start_time=from_micros(stop.start_t),
        end_time=from_micros(stop.end_t) if stop.closed else None,
        lat=stop.lat,
        lon=stop.lon,
        duration_s=stop.duration_s,
    )


def _fix_alert(out: AlertOut) -> alert_service.FixAlert:
    return alert_service.FixAlert(
        rule_id=uuid.UUID(out.rule_id),
        type=out.type,
        occurred_at=from_micros(out.occurred_at),
        lat=out.lat,
        lon=out.lon,
        details=out.details,
    )


async def write_segments(
    session: AsyncSession, work: Sequence[DeviceWork]
) -> list[webhook_events.Event]:
    """Replace the devices' trips and stops in their replays' scopes; returns the events of
    the trips that started or ended and the stops that started."""
    return await trip_service.materialize_segments(
        session,
        [
            trip_service.DeviceSegments(
                tenure=item.tenure,
                vehicle_name=item.device.name,
                trips_from=_moment(item.result.scope.trips_from),
                stops_from=_moment(item.result.scope.stops_from),
                trips=[_trip_span(trip) for trip in item.result.trips],
                stops=[_stop_span(stop) for stop in item.result.stops],
            )
            for item in work
        ],
    )


async def write_alerts(session: AsyncSession, work: Sequence[DeviceWork]) -> Written:
    """Reconcile the devices' fix-derived alerts in their replays' scopes; returns the new
    ones with the events ``alert.created`` and ``alert.ended``."""
    reconciled = await alert_service.reconcile_alerts(
        session,
        [
            alert_service.DeviceAlerts(
                device_id=item.device.id,
                org_id=item.tenure.org_id,
                since=item.tenure.since,
                vehicle_name=item.device.name,
                rule_ids=[uuid.UUID(rule.id) for rule in item.rules],
                after=_moment(item.result.scope.alerts_after),
                open_keys=[
                    (uuid.UUID(rule_id), from_micros(t))
                    for rule_id, t in item.result.scope.alert_keys
                ],
                resumed=item.resumed,
                alerts=[_fix_alert(out) for out in item.result.alerts.values()],
            )
            for item in work
        ],
    )
    return Written(reconciled.created, reconciled.events)


def device_events(
    item: DeviceWork, fix_time: datetime, lat: float, lon: float, now: datetime
) -> list[webhook_events.Event]:
    """``device.online`` when the device's latest position just moved to a recent fix after
    the offline detection had marked it offline (and the mark is cleared)."""
    offline_since = device_state.come_online(item.state, fix_time, now)
    if offline_since is None:
        return []
    device = item.device
    vehicle = webhook_events.VehicleRef(device.id, device.org_id, device.name, device.unique_id)
    return [webhook_events.device_online(vehicle, offline_since, fix_time, lat, lon)]
