"""``device_state``: the row per device the worker continues from, locked while it works."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain.devices.models import Device, DeviceState, MotionState


async def lock_device_states(
    session: AsyncSession, org_by_device: Mapping[uuid.UUID, uuid.UUID]
) -> dict[uuid.UUID, DeviceState]:
    """Create missing rows, then lock every row (in id order) until the transaction ends.

    The row lock is the per-device lock: two workers never process one device at once, and
    the fixed order rules out deadlocks between batches sharing devices.
    """
    if not org_by_device:
        return {}
    await session.execute(
        insert(DeviceState)
        .values([{"device_id": d, "org_id": o} for d, o in sorted(org_by_device.items())])
        .on_conflict_do_nothing(index_elements=["device_id"])
    )
    rows = await session.execute(
        select(DeviceState)
        .where(col(DeviceState.device_id).in_(sorted(org_by_device)))
        .order_by(col(DeviceState.device_id))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {state.device_id: state for state in rows.scalars()}


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
    rows = await session.execute(
        select(DeviceState, Device)
        .join(Device, col(Device.id) == col(DeviceState.device_id))
        .where(col(DeviceState.last_fix_time) < silent_before, col(Device.disabled).is_(False))
    )
    return [(row[0], row[1]) for row in rows]
