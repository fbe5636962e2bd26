"""What a batch's replays make of the stored rows: trips, stops and fix-derived alerts
reconciled in each replay's scope, and the webhook events of what changed.

Rows are kept by key (trips and stops by ``start_time``, alerts by ``(rule_id,
occurred_at)``), so ids and acknowledgements survive a recomputation. An event is derived
from a change of the stored rows, never from the replay alone: a trip is ``started`` when no
row had its start, ``ended`` when its row was open (or new); an alert ``ended`` when its
``details.end_time`` was null (or it is new). Event ids are stable (``webhooks/events.py``),
so an event derived again — a row a recomputation removed then wrote back — is written once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from milepost_common.domain.alerts import service as alert_service
from milepost_common.domain.alerts.models import Alert
from milepost_common.domain.devices import state as device_state
from milepost_common.domain.devices.models import Device, DeviceState
from milepost_common.domain.trips import service as trip_service
from milepost_common.domain.trips.models import Stop, Trip
from milepost_common.domain.webhooks import events as webhook_events
from milepost_worker import timeline
from milepost_worker.motion.machine import StopSegment, TripSegment
from milepost_worker.rules.engine import AlertOut, RuleSpec
from milepost_worker.timeutil import from_micros, to_micros


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


def _trip_row(device: Device, trip: TripSegment) -> dict[str, Any]:
    return {
        "org_id": device.org_id,
        "device_id": device.id,
        "start_time": from_micros(trip.start_t),
        "end_time": from_micros(trip.end_t) if trip.closed else None,
        "start_lat": trip.start_lat,
        "start_lon": trip.start_lon,
        "end_lat": trip.end_lat,
        "end_lon": trip.end_lon,
        "distance_m": trip.distance_m,
        "duration_s": trip.duration_s,
        "avg_speed": trip.avg_speed,
        "max_speed": trip.max_speed,
    }


def _stop_row(device: Device, stop: StopSegment) -> dict[str, Any]:
    return {
        "org_id": device.org_id,
        "device_id": device.id,
        "start_time": from_micros(stop.start_t),
        "end_time": from_micros(stop.end_t) if stop.closed else None,
        "lat": stop.lat,
        "lon": stop.lon,
        "duration_s": stop.duration_s,
    }


def _unchanged(existing: Trip | Stop | None, row: Mapping[str, Any], names: Sequence[str]) -> bool:
    return existing is not None and all(getattr(existing, n) == row[n] for n in names)


SegmentKey = tuple[uuid.UUID, datetime]


async def write_segments(
    session: AsyncSession, work: Sequence[DeviceWork]
) -> list[webhook_events.Event]:
    """Replace the devices' trips and stops in their replays' scopes; returns the events of
    the trips that started or ended and the stops that started."""

    def scope(value: int | None) -> datetime | None:
        return from_micros(value) if value is not None else None

    trips = await trip_service.list_trips_from(
        session, {w.tenure: scope(w.result.scope.trips_from) for w in work}
    )
    stops = await trip_service.list_stops_from(
        session, {w.tenure: scope(w.result.scope.stops_from) for w in work}
    )
    old_trips = {(t.device_id, to_micros(t.start_time)): t for t in trips}
    old_stops = {(s.device_id, to_micros(s.start_time)): s for s in stops}
    trip_rows: list[dict[str, Any]] = []
    stop_rows: list[dict[str, Any]] = []
    keep_trips: set[uuid.UUID] = set()
    keep_stops: set[uuid.UUID] = set()
    started: dict[SegmentKey, str] = {}
    ended: dict[SegmentKey, str] = {}
    stop_started: dict[SegmentKey, str] = {}
    for item in work:
        name = item.device.name
        for trip in item.result.trips:
            row = _trip_row(item.device, trip)
            old_trip = old_trips.get((item.device.id, trip.start_t))
            if old_trip is not None:
                keep_trips.add(old_trip.id)
            if not _unchanged(old_trip, row, trip_service.TRIP_FIELDS):
                trip_rows.append(row)
            key = (item.device.id, row["start_time"])
            if old_trip is None:
                started[key] = name
            if trip.closed and (old_trip is None or old_trip.end_time is None):
                ended[key] = name
        for stop in item.result.stops:
            row = _stop_row(item.device, stop)
            old_stop = old_stops.get((item.device.id, stop.start_t))
            if old_stop is not None:
                keep_stops.add(old_stop.id)
            else:
                stop_started[(item.device.id, row["start_time"])] = name
            if not _unchanged(old_stop, row, trip_service.STOP_FIELDS):
                stop_rows.append(row)
    await trip_service.delete_trips(session, (t.id for t in trips if t.id not in keep_trips))
    await trip_service.delete_stops(session, (s.id for s in stops if s.id not in keep_stops))
    written_trips = await trip_service.upsert_trips(session, trip_rows)
    written_stops = await trip_service.upsert_stops(session, stop_rows)

    out: list[webhook_events.Event] = []
    for row_trip in sorted(written_trips, key=lambda t: t.start_time):
        key = (row_trip.device_id, row_trip.start_time)
        if key in started:
            out.append(webhook_events.trip_started(row_trip, started[key]))
        if key in ended:
            out.append(
                webhook_events.trip_ended(
                    row_trip, ended[key], webhook_events.TripEndReason.STOPPED
                )
            )
    for row_stop in sorted(written_stops, key=lambda s: s.start_time):
        key = (row_stop.device_id, row_stop.start_time)
        if key in stop_started:
            out.append(webhook_events.stop_started(row_stop, stop_started[key]))
    return out


def _ends(details: Mapping[str, Any] | None) -> bool:
    return details is not None and details.get("end_time") is not None


async def write_alerts(session: AsyncSession, work: Sequence[DeviceWork]) -> Written:
    """Reconcile the devices' fix-derived alerts in their replays' scopes; returns the new
    ones with the events ``alert.created`` and ``alert.ended``.

    A device resumed from its latest state owns no stored alert after its watermark, so only
    the keys its open episodes and its new outputs name are looked up.
    """
    scopes: list[alert_service.AlertScope] = []
    for item in work:
        if not item.rules:
            continue
        scope = item.result.scope
        keys = set(scope.alert_keys)
        if item.resumed:
            keys |= set(item.result.alerts)
        scopes.append(
            alert_service.AlertScope(
                device_id=item.device.id,
                org_id=item.tenure.org_id,
                since=item.tenure.since,
                rule_ids=[uuid.UUID(r.id) for r in item.rules],
                after=from_micros(scope.alerts_after) if scope.alerts_after is not None else None,
                keys=[(uuid.UUID(r), from_micros(t)) for r, t in keys],
                keys_only=item.resumed,
            )
        )
    existing = await alert_service.list_alerts_in_scopes(session, scopes)
    by_key = {(a.device_id, str(a.rule_id), to_micros(a.occurred_at)): a for a in existing}
    wanted: dict[tuple[uuid.UUID, str, int], tuple[Device, AlertOut]] = {
        (item.device.id, *key): (item.device, out)
        for item in work
        for key, out in item.result.alerts.items()
    }
    await alert_service.delete_alerts(
        session, (a.id for key, a in by_key.items() if key not in wanted)
    )
    names = {item.device.id: item.device.name for item in work}
    written = Written()
    new_rows = []
    for key, (device, out) in wanted.items():
        alert = by_key.get(key)
        if alert is None:
            new_rows.append(
                {
                    "org_id": device.org_id,
                    "device_id": device.id,
                    "rule_id": uuid.UUID(out.rule_id),
                    "type": out.type,
                    "occurred_at": from_micros(out.occurred_at),
                    "lat": out.lat,
                    "lon": out.lon,
                    "details": out.details,
                }
            )
        elif (alert.details, alert.lat, alert.lon) != (out.details, out.lat, out.lon):
            now_ended = _ends(out.details) and not _ends(alert.details)
            values = {"details": out.details, "lat": out.lat, "lon": out.lon}
            await alert_service.update_alert(session, alert.id, values)
            for attribute, value in values.items():
                set_committed_value(alert, attribute, value)
            if now_ended:
                written.events.append(webhook_events.alert_ended(alert, names[device.id]))
    written.created_alerts = await alert_service.insert_alerts(session, new_rows)
    for alert in written.created_alerts:
        written.events.append(webhook_events.alert_created(alert, names[alert.device_id]))
        if _ends(alert.details):
            written.events.append(webhook_events.alert_ended(alert, names[alert.device_id]))
    return written


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
