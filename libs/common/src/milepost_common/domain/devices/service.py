"""Vehicles of an organization: register, read, search, update.

Every function takes the organization from the actor (or, for operators, an explicit
``org_id``): a device of another organization is as missing as one that does not exist.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, NamedTuple

from sqlalchemy import func, or_
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from milepost_common.domain import paging
from milepost_common.domain.audit import service as audit
from milepost_common.domain.base import ModelT
from milepost_common.domain.devices import names
from milepost_common.domain.devices.errors import (
    DeviceLimitReached,
    DeviceNotFound,
    DeviceUniqueIdTaken,
)
from milepost_common.domain.devices.models import Device, DeviceState
from milepost_common.domain.devices.schemas import (
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


async def _last_fix_time(session: AsyncSession, device_id: uuid.UUID) -> datetime | None:
    query = sa_select(col(DeviceState.last_fix_time)).where(col(DeviceState.device_id) == device_id)
    value: datetime | None = (await session.execute(query)).scalar_one_or_none()
    return value


async def find_device(
    session: AsyncSession, actor: Principal, device_id: uuid.UUID
) -> Device | None:
    """The device if it belongs to the actor's organization."""
    return await find_org_device(session, actor.require_org(), device_id)


async def find_org_device(
    session: AsyncSession, org_id: uuid.UUID, device_id: uuid.UUID
) -> Device | None:
    """The device if it belongs to the organization."""
    query = select(Device).where(Device.id == device_id, Device.org_id == org_id)
    return (await session.scalars(query)).first()


async def get_device(session: AsyncSession, actor: Principal, device_id: uuid.UUID) -> Device:
    """Raises DeviceNotFound when missing or of another organization."""
    return await get_org_device(session, actor.require_org(), device_id)


async def get_org_device(session: AsyncSession, org_id: uuid.UUID, device_id: uuid.UUID) -> Device:
    """Raises DeviceNotFound when missing or of another organization."""
    device = await find_org_device(session, org_id, device_id)
    if device is None:
        raise DeviceNotFound()
    return device


class Named(NamedTuple, Generic[ModelT]):
    """A row and the name of the vehicle it names by id (``names``: None for a row of an
    earlier tenure)."""

    row: ModelT
    vehicle_name: str | None


async def vehicle_history_page(
    session: AsyncSession,
    actor: Principal,
    model: type[ModelT],
    time_field: str,
    vehicle_id: uuid.UUID | None,
    window: paging.Window,
    page: paging.PageRequest,
    narrowed: SelectOfScalar[ModelT] | None = None,
) -> paging.PageResult[Named[ModelT]]:
    """A keyset page of the organization's rows of ``model`` (trips, stops, alerts: rows with
    ``device_id`` and a time), of one vehicle or all, ``window`` on ``time_field``, by the
    page's sort (default ``time_field``), each with its vehicle's name. Raises DeviceNotFound
    for a foreign ``vehicle_id``."""
    return await org_history_page(
        session, actor.require_org(), model, time_field, vehicle_id, window, page, narrowed
    )


async def org_history_page(
    session: AsyncSession,
    org_id: uuid.UUID,
    model: type[ModelT],
    time_field: str,
    vehicle_id: uuid.UUID | None,
    window: paging.Window,
    page: paging.PageRequest,
    narrowed: SelectOfScalar[ModelT] | None = None,
) -> paging.PageResult[Named[ModelT]]:
    """``vehicle_history_page`` for an organization named by its id (operators read any).
    The vehicle's name is joined in the page's own statement."""
    fields: Any = model
    if vehicle_id is not None:
        await get_org_device(session, org_id, vehicle_id)
    sort = page.sort or paging.Sort(time_field)
    base = narrowed if narrowed is not None else select(model)
    query = (
        base.add_columns(names.name_column(col(fields.org_id), col(getattr(model, time_field))))
        .join(Device, col(Device.id) == col(fields.device_id))
        .where(col(fields.org_id) == org_id)
    )
    if vehicle_id is not None:
        query = query.where(col(fields.device_id) == vehicle_id)
    query = paging.time_window(query, col(getattr(model, time_field)), window)
    query = paging.keyset(
        query,
        col(getattr(model, sort.field)),
        col(fields.id),
        limit=page.limit,
        cursor=page.cursor,
        descending=sort.descending,
        key_is_time=sort.field.endswith(("_at", "_time")),
    )
    rows = [Named(row, name) for row, name in (await session.execute(query)).all()]
    return paging.page_of(rows, page.limit, lambda n: (getattr(n.row, sort.field), n.row.id))


async def owned_device_ids(
    session: AsyncSession, actor: Principal, device_ids: set[uuid.UUID]
) -> set[uuid.UUID]:
    """The subset of ``device_ids`` that belongs to the actor's organization."""
    if not device_ids:
        return set()
    query = sa_select(col(Device.id)).where(
        col(Device.org_id) == actor.require_org(), col(Device.id).in_(device_ids)
    )
    return set((await session.scalars(query)).all())


async def get_vehicle(session: AsyncSession, actor: Principal, device_id: uuid.UUID) -> VehicleRead:
    """Raises DeviceNotFound when missing or of another organization."""
    device = await get_device(session, actor, device_id)
    return to_read(device, await _last_fix_time(session, device.id))


async def list_vehicles(
    session: AsyncSession,
    actor: Principal,
    filters: VehicleFilters,
    page: paging.PageRequest,
) -> paging.PageResult[VehicleRead]:
    """A keyset page of the organization's vehicles, sorted by an allow-listed field."""
    sort = page.sort or paging.Sort("created_at")
    query = (
        sa_select(Device, col(DeviceState.last_fix_time))
        .outerjoin(DeviceState, col(DeviceState.device_id) == col(Device.id))
        .where(col(Device.org_id) == actor.require_org())
    )
    if filters.q:
        pattern = f"%{_escape_like(filters.q)}%"
        query = query.where(
            or_(
                col(Device.name).ilike(pattern, escape="\\"),
                col(Device.plate).ilike(pattern, escape="\\"),
                col(Device.unique_id).ilike(pattern, escape="\\"),
            )
        )
    if filters.disabled is not None:
        query = query.where(col(Device.disabled) == filters.disabled)
    if filters.status is not None:
        online_since = datetime.now(UTC) - ONLINE_WINDOW
        last = col(DeviceState.last_fix_time)
        if filters.status is VehicleStatus.UNKNOWN:
            query = query.where(last.is_(None))
        elif filters.status is VehicleStatus.ONLINE:
            query = query.where(last >= online_since)
        else:
            query = query.where(last < online_since)
    key = getattr(Device, sort.field)
    query = paging.keyset(
        query,
        col(key),
        col(Device.id),
        limit=page.limit,
        cursor=page.cursor,
        descending=sort.descending,
        key_is_time=sort.field == "created_at",
    )
    rows = (await session.execute(query)).all()
    result = paging.page_of(rows, page.limit, lambda r: (getattr(r[0], sort.field), r[0].id))
    return paging.PageResult([to_read(d, t) for d, t in result.items], result.next_cursor)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


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
    org = await session.get(Organization, target_org, with_for_update=True)
    if org is None:
        raise DeviceNotFound("Organization not found.")
    if org.max_devices is not None:
        count = await session.scalar(
            sa_select(func.count()).select_from(Device).where(col(Device.org_id) == org.id)
        )
        if (count or 0) >= org.max_devices:
            raise DeviceLimitReached()
    device = Device(org_id=org.id, **data.model_dump())
    try:
        async with session.begin_nested():
            session.add(device)
            await session.flush()
    except IntegrityError:
        raise DeviceUniqueIdTaken() from None
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
    """Change the fields sent. Raises DeviceNotFound. Audited when something changed."""
    device = await get_device(session, actor, device_id)
    sent = data.model_dump(exclude_unset=True)
    if "name" in sent and sent["name"] is None:
        del sent["name"]
    if "disabled" in sent and sent["disabled"] is None:
        del sent["disabled"]
    before: dict[str, Any] = {name: getattr(device, name) for name in sent}
    diff = audit.changes(before, sent)
    if diff:
        for name, value in sent.items():
            setattr(device, name, value)
        device.updated_at = datetime.now(UTC)
        session.add(device)
        await session.flush()
        await audit.record(
            session, actor, "devices.update", target_type="device", target_id=device.id, diff=diff
        )
    return device
