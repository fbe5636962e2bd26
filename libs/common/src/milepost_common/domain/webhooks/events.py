"""The events webhooks carry: their payloads (documented in the api's OpenAPI) and their ids.

Every event is POSTed as ``{id, type, created_at, org_id, data}``. Its ``id`` is derived from
what happened, never drawn at random, so one happening is one event however often the worker
computes it (a redelivered batch, a late fix that recomputes the window, a retry); a delivery
is unique per ``(endpoint, event id)``, so deriving the event again writes nothing:

* ``alert.created``, ``alert.ended`` — from the alert's id (a recomputation keeps an alert
  and its id by ``(rule, vehicle, occurred_at)``). ``alert.ended`` is sent when an alert with
  a duration (overspeed, idle, a geofence dwell) gets its ``details.end_time``.
* ``trip.started``, ``trip.ended``, ``stop.started`` — from ``(vehicle, start_time)``, the
  key trips and stops are stored under: a recomputation that rewrites a trip keeps its start
  and sends nothing again. A recomputation that moves a trip's start makes it another trip
  (another id, its own ``trip.started``); one that removes a trip sends no event: the trip's
  id then answers 404.
* ``device.offline``, ``device.online`` — from ``(vehicle, the last fix before the
  silence)``: once per silence.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from milepost_common.domain.alerts.models import Alert
from milepost_common.domain.alerts.schemas import AlertRead
from milepost_common.domain.trips.models import Stop, Trip
from milepost_common.domain.trips.schemas import StopRead, TripRead
from milepost_common.domain.webhooks.schemas import WebhookEventType

_EVENT_NAMESPACE = uuid.UUID("4f0b6f3e-8d1a-4c4e-9a57-6d696c65706f")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_VEHICLE_NAME = Field(
    description="The vehicle's name in the organization the event is sent to (null for a "
    "vehicle that has left it since)."
)


class TripEndReason(StrEnum):
    STOPPED = "stopped"
    TRANSFERRED = "transferred"


class AlertEventData(AlertRead):
    """The alert as the public API shows it."""

    vehicle_name: str | None = _VEHICLE_NAME


class TripEventData(TripRead):
    """The trip as the public API shows it (open: ``end_time`` null)."""

    vehicle_name: str | None = _VEHICLE_NAME


class TripEndedData(TripEventData):
    reason: TripEndReason = Field(
        description="`stopped`: the vehicle stopped (the trip rule); `transferred`: the "
        "vehicle was transferred to another organization, which ended the trip at its last fix."
    )


class StopEventData(StopRead):
    """The stop as the public API shows it (``end_time`` null: the vehicle is still there)."""

    vehicle_name: str | None = _VEHICLE_NAME


class DeviceOfflineData(BaseModel):
    vehicle_id: uuid.UUID
    vehicle_name: str
    unique_id: str
    last_fix_time: datetime = Field(description="The last fix before the silence.")
    lat: float | None = Field(description="Where the last fix was.")
    lon: float | None
    offline_after_s: int = Field(
        description="How long a vehicle stays silent before it is offline (its `status`)."
    )


class DeviceOnlineData(BaseModel):
    vehicle_id: uuid.UUID
    vehicle_name: str
    unique_id: str
    fix_time: datetime = Field(description="The fix that brought the vehicle back.")
    lat: float
    lon: float
    offline_since: datetime = Field(description="The last fix before the silence.")


class _Event(BaseModel):
    id: uuid.UUID = Field(
        description="Stable: the same for every endpoint and attempt, and in the "
        "`Milepost-Event-Id` header. Deduplicate on it."
    )
    created_at: datetime = Field(description="When the event was recorded (UTC).")
    org_id: uuid.UUID


class AlertCreatedEvent(_Event):
    type: Literal["alert.created"]
    data: AlertEventData


class AlertEndedEvent(_Event):
    type: Literal["alert.ended"]
    data: AlertEventData


class TripStartedEvent(_Event):
    type: Literal["trip.started"]
    data: TripEventData


class TripEndedEvent(_Event):
    type: Literal["trip.ended"]
    data: TripEndedData


class StopStartedEvent(_Event):
    type: Literal["stop.started"]
    data: StopEventData


class DeviceOfflineEvent(_Event):
    type: Literal["device.offline"]
    data: DeviceOfflineData


class DeviceOnlineEvent(_Event):
    type: Literal["device.online"]
    data: DeviceOnlineData


# What each event type's POST body is, with when it is sent (the api documents them).
EVENT_MODELS: dict[WebhookEventType, tuple[type[_Event], str]] = {
    WebhookEventType.ALERT_CREATED: (AlertCreatedEvent, "A rule raised an alert."),
    WebhookEventType.ALERT_ENDED: (
        AlertEndedEvent,
        "An alert with a duration ended: an overspeed or idle episode (`details.end_time`), "
        "or the dwell a geofence alert announced (the vehicle is back on the other side: "
        "`details.end_time` is its first fix there).",
    ),
    WebhookEventType.TRIP_STARTED: (
        TripStartedEvent,
        "A trip started (the trip rule: 200 m within 180 s by default). Sent once per trip "
        "start: a late fix that rewrites the trip sends nothing again; one that moves its start "
        "makes it another trip; a trip a recomputation removes gets no event (its id then "
        "answers 404).",
    ),
    WebhookEventType.TRIP_ENDED: (
        TripEndedEvent,
        "A trip ended: the vehicle stopped, or it was transferred to another organization "
        "(`reason`). Sent once per trip start, even if a late fix moves the end.",
    ),
    WebhookEventType.STOP_STARTED: (StopStartedEvent, "A stop started (where a trip ended)."),
    WebhookEventType.DEVICE_OFFLINE: (
        DeviceOfflineEvent,
        "A vehicle has sent nothing for `offline_after_s` (its `status` became `offline`). "
        "Once per silence; not sent for a vehicle transferred away.",
    ),
    WebhookEventType.DEVICE_ONLINE: (
        DeviceOnlineEvent,
        "The first recent fix of a vehicle that was offline arrived.",
    ),
}


@dataclass(frozen=True, slots=True)
class Event:
    """One event of one organization; ``data`` is JSON-ready."""

    type: WebhookEventType
    id: uuid.UUID
    org_id: uuid.UUID
    data: dict[str, Any]

    def payload(self, created_at: datetime) -> dict[str, Any]:
        """The POST body ``{id, type, created_at, org_id, data}``."""
        return {
            "id": str(self.id),
            "type": self.type.value,
            "created_at": _iso(created_at),
            "org_id": str(self.org_id),
            "data": self.data,
        }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _micros(moment: datetime) -> int:
    """Exact (a float timestamp would round): the key of a row stored by its time."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def event_id(kind: WebhookEventType, *key: uuid.UUID | datetime) -> uuid.UUID:
    """The stable id of the event ``kind`` about the row (or happening) ``key`` names."""
    parts = [str(_micros(k)) if isinstance(k, datetime) else str(k) for k in key]
    return uuid.uuid5(_EVENT_NAMESPACE, ":".join([kind.value, *parts]))


def _data(model: type[BaseModel], read: BaseModel, **extra: Any) -> dict[str, Any]:
    """The public shape ``read`` as the event's ``data`` model, with ``extra`` fields."""
    return model.model_validate({**read.model_dump(), **extra}).model_dump(mode="json")


def alert_event_id(alert_id: uuid.UUID) -> uuid.UUID:
    """The stable event id of an alert's creation (the same for every endpoint and attempt)."""
    return event_id(WebhookEventType.ALERT_CREATED, alert_id)


def alert_data(alert: Alert, vehicle_name: str | None) -> dict[str, Any]:
    """The alert as the public API shows it (numbers rounded, the vehicle's name), JSON-ready:
    the ``data`` of its webhook events and of its live event."""
    return _data(AlertEventData, AlertRead.model_validate(alert), vehicle_name=vehicle_name)


def alert_created(alert: Alert, vehicle_name: str | None) -> Event:
    return Event(
        WebhookEventType.ALERT_CREATED,
        alert_event_id(alert.id),
        alert.org_id,
        alert_data(alert, vehicle_name),
    )


def alert_ended(alert: Alert, vehicle_name: str | None) -> Event:
    """``alert`` as it is once ended (``details.end_time`` set)."""
    return Event(
        WebhookEventType.ALERT_ENDED,
        event_id(WebhookEventType.ALERT_ENDED, alert.id),
        alert.org_id,
        alert_data(alert, vehicle_name),
    )


def trip_started(trip: Trip, vehicle_name: str | None) -> Event:
    return Event(
        WebhookEventType.TRIP_STARTED,
        event_id(WebhookEventType.TRIP_STARTED, trip.device_id, trip.start_time),
        trip.org_id,
        _data(TripEventData, TripRead.model_validate(trip), vehicle_name=vehicle_name),
    )


def trip_ended(trip: Trip, vehicle_name: str | None, reason: TripEndReason) -> Event:
    return Event(
        WebhookEventType.TRIP_ENDED,
        event_id(WebhookEventType.TRIP_ENDED, trip.device_id, trip.start_time),
        trip.org_id,
        _data(
            TripEndedData, TripRead.model_validate(trip), vehicle_name=vehicle_name, reason=reason
        ),
    )


def stop_started(stop: Stop, vehicle_name: str | None) -> Event:
    return Event(
        WebhookEventType.STOP_STARTED,
        event_id(WebhookEventType.STOP_STARTED, stop.device_id, stop.start_time),
        stop.org_id,
        _data(StopEventData, StopRead.model_validate(stop), vehicle_name=vehicle_name),
    )


@dataclass(frozen=True, slots=True)
class VehicleRef:
    """Who an event is about: the device as its organization knows it."""

    id: uuid.UUID
    org_id: uuid.UUID
    name: str
    unique_id: str


def device_offline(
    vehicle: VehicleRef,
    last_fix_time: datetime,
    lat: float | None,
    lon: float | None,
    offline_after_s: int,
) -> Event:
    data = DeviceOfflineData(
        vehicle_id=vehicle.id,
        vehicle_name=vehicle.name,
        unique_id=vehicle.unique_id,
        last_fix_time=last_fix_time,
        lat=lat,
        lon=lon,
        offline_after_s=offline_after_s,
    )
    return Event(
        WebhookEventType.DEVICE_OFFLINE,
        event_id(WebhookEventType.DEVICE_OFFLINE, vehicle.id, last_fix_time),
        vehicle.org_id,
        data.model_dump(mode="json"),
    )


def device_online(
    vehicle: VehicleRef, offline_since: datetime, fix_time: datetime, lat: float, lon: float
) -> Event:
    data = DeviceOnlineData(
        vehicle_id=vehicle.id,
        vehicle_name=vehicle.name,
        unique_id=vehicle.unique_id,
        fix_time=fix_time,
        lat=lat,
        lon=lon,
        offline_since=offline_since,
    )
    return Event(
        WebhookEventType.DEVICE_ONLINE,
        event_id(WebhookEventType.DEVICE_ONLINE, vehicle.id, offline_since),
        vehicle.org_id,
        data.model_dump(mode="json"),
    )
