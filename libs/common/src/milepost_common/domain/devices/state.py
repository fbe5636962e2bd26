"""``device_state``: the row per device the worker continues from, locked while it works."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.devices.models import Device, DeviceState, MotionState
from milepost_common.domain.devices.repository import DeviceStateRepository
from milepost_common.domain.devices.schemas import VehicleStatus
from milepost_common.domain.devices.service import ONLINE_WINDOW, status_of
from milepost_common.domain.webhooks import events as webhook_events


async def lock_device_states(
    session: AsyncSession, org_by_device: Mapping[uuid.UUID, uuid.UUID]
) -> dict[uuid.UUID, DeviceState]:
    """Create missing rows, then lock every row (in id order) until the transaction ends.

    The row lock is the per-device lock: two workers never process one device at once, and
    the fixed order rules out deadlocks between batches sharing devices. The organizations'
    batch locks are taken first, shared (see :func:`wait_for_batches`).
    """
    if not org_by_device:
        return {}
    return await DeviceStateRepository(session).lock(org_by_device)


async def wait_for_batches(session: AsyncSession, org_id: uuid.UUID) -> None:
    """Wait until every batch now processing a device of the organization has committed, and
    hold off its next ones until this transaction ends: each takes the organization's lock
    shared before its devices' (``lock_device_states``). A rule's change needs it, since a
    batch reads the rules once its devices are locked and works with what it read."""
    await DeviceStateRepository(session).hold_orgs({org_id}, exclusive=True)


def record_position(state: DeviceState, fix_time: datetime, values: Mapping[str, Any]) -> bool:
    """Move the latest position forward; returns whether it changed."""
    if state.last_fix_time is not None and fix_time <= state.last_fix_time:
        return False
    state.last_fix_time = fix_time
    state.last_lat = values["lat"]
    state.last_lon = values["lon"]
    state.last_speed = values.get("speed")
    state.last_course = values.get("course")
    state.last_altitude = values.get("altitude")
    state.last_accuracy = values.get("accuracy")
    state.last_attributes = dict(values.get("attributes") or {})
    state.offline_alerted_at = None
    return True


def reset(state: DeviceState, org_id: uuid.UUID) -> None:
    """Empty the state for a new tenure: no last position, no motion, no watermark."""
    for name in (
        "last_fix_time",
        "last_lat",
        "last_lon",
        "last_speed",
        "last_course",
        "last_altitude",
        "last_accuracy",
        "watermark",
        "offline_alerted_at",
        "offline_since",
    ):
        setattr(state, name, None)
    state.org_id = org_id
    state.last_attributes = {}
    state.machine = {}
    state.motion = MotionState.STOPPED
    state.updated_at = datetime.now(UTC)


async def list_silent_devices(
    session: AsyncSession,
    silent_before: datetime,
) -> list[tuple[DeviceState, Device]]:
    """Devices (enabled) whose last fix is older than ``silent_before``."""
    return await DeviceStateRepository(session).list_silent(silent_before)


def continue_from(
    state: DeviceState, machine: dict[str, Any], watermark: datetime, *, moving: bool
) -> None:
    """Where the worker continues the device next: the motion and rule states (worker-defined
    JSON) right after its fix at ``watermark``."""
    state.machine = machine
    state.watermark = watermark
    state.motion = MotionState.MOVING if moving else MotionState.STOPPED
    state.updated_at = datetime.now(UTC)


def forget_rule(state: DeviceState, rule_id: uuid.UUID) -> None:
    """Drop the rule's state from where the worker continues (``rules``, keyed by rule id, in
    the worker's snapshot): its open episode was ended for the rule that stopped applying, so
    if it applies again before the next batch, that batch starts the rule afresh instead of
    continuing the ended episode (and ending it a second time)."""
    rules = (state.machine or {}).get("rules")
    if isinstance(rules, dict) and str(rule_id) in rules:
        kept = {key: value for key, value in rules.items() if key != str(rule_id)}
        state.machine = {**state.machine, "rules": kept}  # a new dict: JSONB is not tracked


def went_online(
    state: DeviceState, device: Device, fix_time: datetime, lat: float, lon: float, now: datetime
) -> list[webhook_events.Event]:
    """After ``record_position`` moved to ``fix_time``: ``device.online`` when the offline
    detection had marked the device offline and this fix is recent (the mark is cleared;
    see :func:`come_online`)."""
    offline_since = come_online(state, fix_time, now)
    if offline_since is None:
        return []
    vehicle = webhook_events.VehicleRef(device.id, device.org_id, device.name, device.unique_id)
    return [webhook_events.device_online(vehicle, offline_since, fix_time, lat, lon)]


def come_online(state: DeviceState, fix_time: datetime, now: datetime) -> datetime | None:
    """After ``record_position`` moved to ``fix_time``: if the offline detection had marked
    the device offline and this fix is recent (the device's ``status`` is online again),
    clear the mark and return it (the last fix before the silence)."""
    since = state.offline_since
    if since is None or fix_time <= since or now - fix_time > ONLINE_WINDOW:
        return None
    state.offline_since = None
    return since


@dataclass(frozen=True, slots=True)
class WentOffline:
    device_id: uuid.UUID
    org_id: uuid.UUID
    name: str
    unique_id: str
    last_fix_time: datetime
    lat: float | None
    lon: float | None


async def mark_offline(session: AsyncSession, now: datetime) -> list[WentOffline]:
    """Mark every enabled device silent for longer than ``ONLINE_WINDOW`` (its ``status`` is
    offline) and not marked yet: ``offline_since`` = its last fix; returns them. Once per
    silence: a device stays marked until a recent fix arrives. A device a batch is
    processing (its row locked) is judged after that batch, on the row it leaves."""
    marked = await DeviceStateRepository(session).mark_offline(now - ONLINE_WINDOW)
    went = [
        WentOffline(device_id, org_id, name, unique_id, last_fix, lat, lon)
        for device_id, org_id, name, unique_id, last_fix, lat, lon in marked
        if last_fix is not None  # never, by the update's condition
    ]
    return sorted(went, key=lambda w: w.device_id)


async def find_state(session: AsyncSession, device_id: uuid.UUID) -> DeviceState | None:
    """The device's state: its latest position in its current tenure (none before a fix)."""
    return await DeviceStateRepository(session).get(device_id)


@dataclass(frozen=True, slots=True)
class Seen:
    """When a device last sent a fix (in its current tenure) and its status by that."""

    at: datetime | None
    status: VehicleStatus


async def last_seen(
    session: AsyncSession, device_ids: Collection[uuid.UUID], now: datetime | None = None
) -> dict[uuid.UUID, Seen]:
    """Every device's last fix time and status (``unknown`` before its first fix): what the
    console's device lists show."""
    if not device_ids:
        return {}
    times = await DeviceStateRepository(session).last_fix_times(device_ids)
    now = now or datetime.now(UTC)
    return {
        device_id: Seen(times.get(device_id), status_of(times.get(device_id), now))
        for device_id in device_ids
    }
