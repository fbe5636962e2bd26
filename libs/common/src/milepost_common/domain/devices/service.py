"""Vehicles of an organization: register, read, search, update; for operators, every
organization's devices: find, list, suggest, count, disable, edit.

Every public-API function takes the organization from the actor (or, for operators, an
explicit ``org_id``): a device of another organization is as missing as one that does not
exist. The operators' CSV import is ``imports.py``; transfers between organizations and
deletion (both bounded by tenures) are ``tenure.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain import paging
from milepost_common.domain.audit import service as audit
from milepost_common.domain.devices.errors import (
    DeviceLimitReached,
    DeviceNotFound,
    DeviceUniqueIdTaken,
)
from milepost_common.domain.devices.models import Device
from milepost_common.domain.devices.repository import (
    DeviceRepository,
    DeviceStateRepository,
)
from milepost_common.domain.devices.schemas import (
    DeviceFilters,
    DeviceUpdate,
    VehicleCreate,
    VehicleFilters,
    VehicleRead,
    VehicleStatus,
    VehicleUpdate,
)
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.principals import Principal

# A vehicle whose latest fix is younger than this is online.
ONLINE_WINDOW = timedelta(minutes=10)
SORTABLE = ("created_at", "name", "unique_id")


def status_of(last_fix_time: datetime | None, now: datetime | None = None) -> VehicleStatus:
    if last_fix_time is None:
        return VehicleStatus.UNKNOWN
    now = now or datetime.now(UTC)
    return VehicleStatus.ONLINE if now - last_fix_time <= ONLINE_WINDOW else VehicleStatus.OFFLINE


def to_read(device: Device, last_fix_time: datetime | None) -> VehicleRead:
    return VehicleRead(
        id=device.id,
        unique_id=device.unique_id,
        name=device.name,
        plate=device.plate,
        speed_limit_kmh=device.speed_limit_kmh,
        disabled=device.disabled,
        last_fix_time=last_fix_time,
        status=status_of(last_fix_time),
    )


async def find_device(
    session: AsyncSession, actor: Principal, device_id: uuid.UUID
) -> Device | None:
    """The device if it belongs to the actor's organization."""
    return await find_org_device(session, actor.require_org(), device_id)


async def find_org_device(
    session: AsyncSession, org_id: uuid.UUID, device_id: uuid.UUID
) -> Device | None:
    """The device if it belongs to the organization."""
    return await DeviceRepository(session).get_for_org(org_id, device_id)


async def find_devices(
    session: AsyncSession, device_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, Device]:
    """The devices of ``device_ids`` that exist, by id, whichever their organization (the
    worker's read: a batch's fixes name their devices)."""
    return {device.id: device for device in await DeviceRepository(session).get_many(device_ids)}


async def find_devices_with_organizations(
    session: AsyncSession, device_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, tuple[Device, Organization]]:
    """``find_devices``, each device with its organization (the worker's read: processing a
    batch needs both, in one round trip)."""
    pairs = await DeviceRepository(session).get_many_with_organizations(device_ids)
    return {device.id: (device, org) for device, org in pairs}


async def get_device(session: AsyncSession, actor: Principal, device_id: uuid.UUID) -> Device:
    """Raises DeviceNotFound when missing or of another organization."""
    return await get_org_device(session, actor.require_org(), device_id)


async def get_org_device(session: AsyncSession, org_id: uuid.UUID, device_id: uuid.UUID) -> Device:
    """Raises DeviceNotFound when missing or of another organization."""
    device = await find_org_device(session, org_id, device_id)
    if device is None:
        raise DeviceNotFound()
    return device


async def owned_device_ids(
    session: AsyncSession, actor: Principal, device_ids: set[uuid.UUID]
) -> set[uuid.UUID]:
    """The subset of ``device_ids`` that belongs to the actor's organization."""
    if not device_ids:
        return set()
    return await DeviceRepository(session).owned_ids(actor.require_org(), device_ids)


async def get_vehicle(session: AsyncSession, actor: Principal, device_id: uuid.UUID) -> VehicleRead:
    """Raises DeviceNotFound when missing or of another organization."""
    device = await get_device(session, actor, device_id)
    return to_read(device, await DeviceStateRepository(session).last_fix_time(device.id))


async def list_vehicles(
    session: AsyncSession,
    actor: Principal,
    filters: VehicleFilters,
    page: paging.PageRequest,
) -> paging.PageResult[VehicleRead]:
    """A keyset page of the organization's vehicles, sorted by an allow-listed field."""
    result = await DeviceRepository(session).vehicles_page(
        actor.require_org(), filters, page, online_since=datetime.now(UTC) - ONLINE_WINDOW
    )
    return paging.PageResult([to_read(d, t) for d, t in result.items], result.next_cursor)


async def register_device(
    session: AsyncSession,
    actor: Principal,
    data: VehicleCreate,
    *,
    org_id: uuid.UUID | None = None,
) -> Device:
    """Create a device in the actor's organization (operators name ``org_id``). Raises
    DeviceUniqueIdTaken (unique platform-wide) or DeviceLimitReached. Audited."""
    target_org = org_id if org_id is not None else actor.require_org()
    devices = DeviceRepository(session)
    org = await devices.lock_org(target_org)
    if org is None:
        raise DeviceNotFound("Organization not found.")
    if org.max_devices is not None and await devices.count_for_org(org.id) >= org.max_devices:
        raise DeviceLimitReached()
    device = Device(org_id=org.id, **data.model_dump())
    if not await devices.insert(device):
        raise DeviceUniqueIdTaken()
    await audit.record(
        session,
        actor,
        "devices.register",
        target_type="device",
        target_id=device.id,
        org_id=org.id,
        diff=data.model_dump(),
    )
    return device


async def update_device(
    session: AsyncSession, actor: Principal, device_id: uuid.UUID, data: VehicleUpdate
) -> Device:
    """Change the fields sent. Raises DeviceNotFound (also once a transfer moved it away
    meanwhile: the row is locked, so the change lands before a transfer or not at all).
    Audited when something changed."""
    device = await DeviceRepository(session).get_for_org(actor.require_org(), device_id, lock=True)
    if device is None:
        raise DeviceNotFound()
    sent = data.model_dump(exclude_unset=True)
    if "name" in sent and sent["name"] is None:
        del sent["name"]
    if "disabled" in sent and sent["disabled"] is None:
        del sent["disabled"]
    return await _apply_update(session, actor, device, sent)


async def get_any_device(session: AsyncSession, device_id: uuid.UUID) -> Device:
    """For operators: a device of any organization. Raises DeviceNotFound."""
    device = await DeviceRepository(session).get(device_id)
    if device is None:
        raise DeviceNotFound("Device not found.")
    return device


async def list_devices(session: AsyncSession, filters: DeviceFilters) -> paging.PageResult[Device]:
    """For operators: a keyset page of devices of every organization (or one, or those
    named like ``org_name``), by the filters' sort."""
    return await DeviceRepository(session).page(filters)


async def suggest_devices(session: AsyncSession, part: str, *, limit: int = 10) -> list[Device]:
    """For operators: up to ``limit`` devices whose unique id or name contains ``part``,
    those whose unique id or name starts with it first: suggestions for a search box."""
    part = part.strip()
    if not part:
        return []
    return await DeviceRepository(session).suggest(part, limit=limit)


async def count_devices(session: AsyncSession, org_id: uuid.UUID) -> int:
    """How many devices the organization has now."""
    return await DeviceRepository(session).count_for_org(org_id)


async def set_device_disabled(
    session: AsyncSession, actor: Principal, device: Device, disabled: bool
) -> Device:
    """For operators; idempotent. A disabled device's fixes are rejected at ingest. Audited
    on change."""
    if device.disabled == disabled:
        return device
    device.disabled = disabled
    action = "devices.disable" if disabled else "devices.enable"
    await _save_audited(session, actor, device, action, {"disabled": [not disabled, disabled]})
    return device


async def update_device_for_operator(
    session: AsyncSession, actor: Principal, device: Device, data: DeviceUpdate
) -> Device:
    """For operators: change the fields sent (``name: null`` is ignored; ``null`` clears
    plate and speed limit). Audited (``devices.update``, under the device's organization
    as it is now) when something changed. Raises DeviceNotFound once deleted meanwhile."""
    locked = await DeviceRepository(session).relock(device)
    if locked is None:
        raise DeviceNotFound("Device not found.")
    device = locked
    sent = data.model_dump(exclude_unset=True)
    if sent.get("name", "") is None:
        del sent["name"]
    return await _apply_update(session, actor, device, sent)


async def _apply_update(
    session: AsyncSession, actor: Principal, device: Device, sent: dict[str, Any]
) -> Device:
    """Set the fields ``sent``; audited (``devices.update``) when something changed."""
    diff = audit.changes({name: getattr(device, name) for name in sent}, sent)
    if diff:
        for name, value in sent.items():
            setattr(device, name, value)
        await _save_audited(session, actor, device, "devices.update", diff)
    return device


async def _save_audited(
    session: AsyncSession, actor: Principal, device: Device, action: str, diff: dict[str, Any]
) -> None:
    """Store the changed device and audit the change under the device's organization (an
    operator has none of its own)."""
    device.updated_at = datetime.now(UTC)
    session.add(device)
    await session.flush()
    await audit.record(
        session,
        actor,
        action,
        target_type="device",
        target_id=device.id,
        org_id=device.org_id,
        diff=diff,
    )
