"""Statements on ``devices`` and ``device_state``, and what deleting a device reads and
removes of its history."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Generic, NamedTuple

from sqlalchemy import ColumnElement, delete, func, or_, text, update
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from milepost_common.domain import paging
from milepost_common.domain.alerts.models import Alert
from milepost_common.domain.audit.models import AuditEntry
from milepost_common.domain.base import ModelT, find_by_id, lock_by_ids
from milepost_common.domain.devices import names
from milepost_common.domain.devices.models import Device, DeviceState
from milepost_common.domain.devices.schemas import DeviceFilters, VehicleFilters, VehicleStatus
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.organizations.repository import ids_named
from milepost_common.domain.positions.models import Position
from milepost_common.domain.trips.models import Stop, Trip

# Rows of another organization than the device's that name the device (deleting it would
# cascade into them, or orphan the positions, which carry no foreign key).
_HISTORY_ELSEWHERE = text(
    """
    SELECT EXISTS (SELECT 1 FROM positions WHERE device_id = :d AND org_id <> :org)
        OR EXISTS (SELECT 1 FROM trips WHERE device_id = :d AND org_id <> :org)
        OR EXISTS (SELECT 1 FROM stops WHERE device_id = :d AND org_id <> :org)
        OR EXISTS (SELECT 1 FROM alerts WHERE device_id = :d AND org_id <> :org)
    """
)


# Devices written by one statement (asyncpg takes at most 32,767 parameters: 14 a device).
_INSERT_ROWS = 1000


class Named(NamedTuple, Generic[ModelT]):
    """A row and the name of the vehicle it names by id (``names``: None for a row of an
    earlier tenure)."""

    row: ModelT
    vehicle_name: str | None


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class DeviceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, device_id: uuid.UUID) -> Device | None:
        """A device of any organization."""
        return await self.session.get(Device, device_id)

    async def get_many(self, device_ids: Collection[uuid.UUID]) -> list[Device]:
        """Those of ``device_ids`` that exist, of any organization."""
        if not device_ids:
            return []
        query = select(Device).where(col(Device.id).in_(list(device_ids)))
        return list((await self.session.scalars(query)).all())

    async def get_many_with_organizations(
        self, device_ids: Collection[uuid.UUID]
    ) -> list[tuple[Device, Organization]]:
        """Those of ``device_ids`` that exist, of any organization, each with its
        organization (one statement)."""
        if not device_ids:
            return []
        query = (
            select(Device, Organization)
            .join(Organization, col(Organization.id) == col(Device.org_id))
            .where(col(Device.id).in_(list(device_ids)))
        )
        return [(device, org) for device, org in await self.session.execute(query)]

    async def get_for_org(
        self, org_id: uuid.UUID, device_id: uuid.UUID, *, lock: bool = False
    ) -> Device | None:
        """The organization's device; with ``lock``, read afresh and locked (``FOR NO KEY
        UPDATE``) until the transaction ends, and missing once a transfer has moved it."""
        query = select(Device).where(Device.id == device_id, Device.org_id == org_id)
        if lock:
            query = query.with_for_update(key_share=True).execution_options(populate_existing=True)
        return (await self.session.scalars(query)).first()

    async def relock(self, device: Device) -> Device | None:
        """The device read afresh (its organization may have changed since it was read) and
        locked (``FOR NO KEY UPDATE``) until the transaction ends; None once deleted."""
        query = (
            select(Device)
            .where(Device.id == device.id)
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(query)).first()

    async def owned_ids(
        self, org_id: uuid.UUID, device_ids: Collection[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Those of ``device_ids`` the organization holds."""
        query = sa_select(col(Device.id)).where(
            col(Device.org_id) == org_id, col(Device.id).in_(device_ids)
        )
        return set((await self.session.scalars(query)).all())

    async def count_for_org(self, org_id: uuid.UUID) -> int:
        query = select(func.count()).select_from(Device).where(Device.org_id == org_id)
        return int(await self.session.scalar(query) or 0)

    async def lock_org(self, org_id: uuid.UUID) -> Organization | None:
        """The organization, locked until the transaction ends (its device count holds)."""
        return await self.session.get(Organization, org_id, with_for_update=True)

    async def lock_orgs(self, org_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Organization]:
        """The organizations read afresh and locked (``FOR NO KEY UPDATE``, in id order) until
        the transaction ends, by id; one deleted meanwhile is missing."""
        return await lock_by_ids(self.session, Organization, org_ids)

    async def relock_org(self, org: Organization) -> None:
        """Read the organization afresh and lock it until the transaction ends."""
        await self.session.refresh(org, with_for_update=True)

    async def insert_new(self, devices: Sequence[Device]) -> set[str]:
        """Insert the devices whose unique_id no device holds, one taken meanwhile by
        another transaction too (which this waits for); the unique_ids inserted."""
        inserted: set[str] = set()
        for start in range(0, len(devices), _INSERT_ROWS):
            rows = [device.model_dump() for device in devices[start : start + _INSERT_ROWS]]
            statement = (
                insert(Device)
                .values(rows)
                .on_conflict_do_nothing(index_elements=[col(Device.unique_id)])
                .returning(col(Device.unique_id))
            )
            inserted.update((await self.session.scalars(statement)).all())
        return inserted

    async def insert(self, device: Device) -> bool:
        """Flush a new device in a savepoint; False when its unique_id is taken."""
        try:
            async with self.session.begin_nested():
                self.session.add(device)
                await self.session.flush()
        except IntegrityError:
            return False
        return True

    async def history_page(
        self,
        org_id: uuid.UUID,
        model: type[ModelT],
        time_field: str,
        vehicle_id: uuid.UUID | None,
        window: paging.Window,
        page: paging.PageRequest,
        narrowed: SelectOfScalar[ModelT] | None = None,
    ) -> paging.PageResult[Named[ModelT]]:
        """A keyset page of the organization's rows of ``model`` (rows with ``device_id``
        and a time), of one vehicle or all, ``window`` on ``time_field``, by the page's sort
        (default ``time_field``), the vehicle's name joined in the same statement."""
        fields: Any = model
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
            sort=sort,
        )
        rows = [Named(row, name) for row, name in (await self.session.execute(query)).all()]
        return paging.page_of(
            rows, page.limit, lambda n: (getattr(n.row, sort.field), n.row.id), sort=sort
        )

    async def vehicles_page(
        self,
        org_id: uuid.UUID,
        filters: VehicleFilters,
        page: paging.PageRequest,
        *,
        online_since: datetime,
    ) -> paging.PageResult[tuple[Device, datetime | None]]:
        """A keyset page of the organization's devices with their last fix time, sorted by
        an allow-listed field; online means a last fix at or after ``online_since``."""
        sort = page.sort or paging.Sort("created_at")
        query = (
            sa_select(Device, col(DeviceState.last_fix_time))
            .outerjoin(DeviceState, col(DeviceState.device_id) == col(Device.id))
            .where(col(Device.org_id) == org_id)
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
            last = col(DeviceState.last_fix_time)
            if filters.status is VehicleStatus.UNKNOWN:
                query = query.where(last.is_(None))
            elif filters.status is VehicleStatus.ONLINE:
                query = query.where(last >= online_since)
            else:
                query = query.where(last < online_since)
        key = getattr(Device, sort.field)
        query = paging.keyset(
            query, col(key), col(Device.id), limit=page.limit, cursor=page.cursor, sort=sort
        )
        rows = (await self.session.execute(query)).all()
        result = paging.page_of(
            rows, page.limit, lambda r: (getattr(r[0], sort.field), r[0].id), sort=sort
        )
        return paging.PageResult([(d, t) for d, t in result.items], result.next_cursor)

    async def page(self, filters: DeviceFilters) -> paging.PageResult[Device]:
        """A keyset page of devices of every organization (or one, or those named like
        ``org_name``), by the filters' sort."""
        query = select(Device)
        if filters.org_id is not None:
            query = query.where(Device.org_id == filters.org_id)
        if filters.org_name:
            query = query.where(col(Device.org_id).in_(ids_named(filters.org_name)))
        if filters.q:
            query = query.where(
                or_(
                    col(Device.unique_id).icontains(filters.q, autoescape=True),
                    col(Device.name).icontains(filters.q, autoescape=True),
                    col(Device.plate).icontains(filters.q, autoescape=True),
                )
            )
        if filters.disabled is not None:
            query = query.where(Device.disabled == filters.disabled)
        return await paging.sorted_page(self.session, query, Device, filters)

    async def suggest(self, part: str, *, limit: int) -> list[Device]:
        """Devices whose unique id or name contains ``part``, those starting with it first."""
        unique_id, name = col(Device.unique_id), col(Device.name)
        starts = or_(
            unique_id.istartswith(part, autoescape=True), name.istartswith(part, autoescape=True)
        )
        query = (
            select(Device)
            .where(
                or_(
                    unique_id.icontains(part, autoescape=True),
                    name.icontains(part, autoescape=True),
                )
            )
            .order_by(starts.desc(), unique_id)
            .limit(limit)
        )
        return list((await self.session.scalars(query)).all())

    async def unique_ids_taken(self, unique_ids: list[str]) -> set[str]:
        """Those of ``unique_ids`` some device has (of any organization)."""
        taken: set[str] = set()
        for start in range(0, len(unique_ids), 1000):
            chunk = unique_ids[start : start + 1000]
            query = select(col(Device.unique_id)).where(col(Device.unique_id).in_(chunk))
            taken.update((await self.session.scalars(query)).all())
        return taken

    async def was_audited(self, device_id: uuid.UUID, action: str) -> bool:
        """Whether the audit log has an ``action`` entry for the device."""
        query = select(col(AuditEntry.id)).where(
            AuditEntry.action == action, AuditEntry.target_id == str(device_id)
        )
        return (await self.session.scalars(query.limit(1))).first() is not None

    async def has_rows_elsewhere(self, device: Device) -> bool:
        """Whether positions, trips, stops or alerts of another organization name it."""
        found = await self.session.scalar(
            _HISTORY_ELSEWHERE, {"d": device.id, "org": device.org_id}
        )
        return bool(found)

    async def count_history(self, device_id: uuid.UUID) -> dict[str, int]:
        """How many trips, stops and alerts name the device, by table."""
        counts: dict[str, int] = {}
        for table in (Trip, Stop, Alert):
            query = select(func.count()).select_from(table).where(col(table.device_id) == device_id)
            counts[table.__tablename__] = int(await self.session.scalar(query) or 0)
        return counts

    async def delete_positions(self, device_id: uuid.UUID) -> int:
        """Positions carry no foreign key (partitioned): through the primary key's device
        column. How many went."""
        removed = await self.session.execute(
            delete(Position).where(col(Position.device_id) == device_id)
        )
        return int(getattr(removed, "rowcount", 0) or 0)


class TimelineRepository(Generic[ModelT]):
    """Rows of a device's timeline (trips, stops, alerts: a time, ``device_id``, ``org_id``),
    read by their organization with the vehicle's name of their tenure. A subclass names the
    table and its time."""

    model: type[ModelT]
    # SQL true for a row whose episode has not ended (kept by retention).
    still_open: ClassVar[str] = "false"
    time_field: str

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_for_org(
        self, org_id: uuid.UUID, row_id: uuid.UUID, *, for_update: bool = False
    ) -> ModelT | None:
        return await find_by_id(
            self.session, self.model, row_id, org_id=org_id, for_update=for_update
        )

    async def device_of(self, row: ModelT) -> Device | None:
        """The row's device, whichever organization holds it now."""
        device_id: uuid.UUID = getattr(row, "device_id")  # noqa: B009 - every timeline row has one
        return await self.session.get(Device, device_id)

    async def timeline_page(
        self,
        org_id: uuid.UUID,
        vehicle_id: uuid.UUID | None,
        window: paging.Window,
        page: paging.PageRequest,
        narrowed: SelectOfScalar[ModelT] | None = None,
    ) -> paging.PageResult[Named[ModelT]]:
        """The organization's rows (of one vehicle or all, of ``narrowed`` when given) whose
        time is in ``window``, by the page's sort (default their time), each with its
        vehicle's name."""
        return await DeviceRepository(self.session).history_page(
            org_id, self.model, self.time_field, vehicle_id, window, page, narrowed
        )

    async def delete_expired(self, org_id: uuid.UUID, cutoff: datetime, *, limit: int) -> int:
        """Up to ``limit`` of the organization's rows whose time is before ``cutoff`` and
        that have ended (an episode still open, a vehicle parked in a depot for longer than
        the retention, stays: the worker would write it again as new); how many went."""
        table = self.model.__tablename__
        expired = text(
            f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE org_id = :org "  # noqa: S608 - the model's own names
            f"AND {self.time_field} < :cutoff AND NOT coalesce({self.still_open}, false) LIMIT :n)"
        )
        result = await self.session.execute(expired, {"org": org_id, "cutoff": cutoff, "n": limit})
        return int(getattr(result, "rowcount", 0) or 0)


def _of_an_active_organization() -> ColumnElement[bool]:
    """A device of an organization not suspended: a suspended one's devices fall silent (its
    keys are refused), and each would be reported offline to it (alerts, webhooks)."""
    suspended = select(col(Organization.id)).where(col(Organization.suspended_at).is_not(None))
    return col(Device.org_id).not_in(suspended)


# The first key of the organizations' batch locks (pg_advisory_xact_lock's two-key form): "batc".
_BATCH_LOCK_SPACE = 0x62617463
_HOLD_SHARED = text(
    "SELECT pg_advisory_xact_lock_shared(:space, hashtext(o)) FROM unnest(CAST(:orgs AS text[])) o"
)
_HOLD_EXCLUSIVE = text(
    "SELECT pg_advisory_xact_lock(:space, hashtext(o)) FROM unnest(CAST(:orgs AS text[])) o"
)


class DeviceStateRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, device_id: uuid.UUID) -> DeviceState | None:
        return await self.session.get(DeviceState, device_id)

    async def last_fix_time(self, device_id: uuid.UUID) -> datetime | None:
        query = sa_select(col(DeviceState.last_fix_time)).where(
            col(DeviceState.device_id) == device_id
        )
        value: datetime | None = (await self.session.execute(query)).scalar_one_or_none()
        return value

    async def last_fix_times(
        self, device_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, datetime | None]:
        """The last fix time of those of ``device_ids`` that have a state row."""
        rows = await self.session.execute(
            select(col(DeviceState.device_id), col(DeviceState.last_fix_time)).where(
                col(DeviceState.device_id).in_(list(device_ids))
            )
        )
        return {row[0]: row[1] for row in rows}

    async def hold_orgs(self, org_ids: Collection[uuid.UUID], *, exclusive: bool = False) -> None:
        """Take the organizations' batch locks until the transaction ends (shared: every
        locker of device states; exclusive: what must wait for them; see
        ``device_state.wait_for_batches``), in a fixed order."""
        await self.session.execute(
            _HOLD_EXCLUSIVE if exclusive else _HOLD_SHARED,
            {"space": _BATCH_LOCK_SPACE, "orgs": sorted(str(o) for o in org_ids)},
        )

    async def lock(
        self, org_by_device: Mapping[uuid.UUID, uuid.UUID]
    ) -> dict[uuid.UUID, DeviceState]:
        """Take the organizations' batch locks (shared), create missing rows, then lock every
        row (in id order) until the transaction ends."""
        await self.hold_orgs(set(org_by_device.values()))
        await self.session.execute(
            insert(DeviceState)
            .values([{"device_id": d, "org_id": o} for d, o in sorted(org_by_device.items())])
            .on_conflict_do_nothing(index_elements=["device_id"])
        )
        rows = await self.session.execute(
            select(DeviceState)
            .where(col(DeviceState.device_id).in_(sorted(org_by_device)))
            .order_by(col(DeviceState.device_id))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return {state.device_id: state for state in rows.scalars()}

    async def list_silent(self, silent_before: datetime) -> list[tuple[DeviceState, Device]]:
        """Devices (enabled, of an organization not suspended) whose last fix is older than
        ``silent_before``."""
        rows = await self.session.execute(
            select(DeviceState, Device)
            .join(Device, col(Device.id) == col(DeviceState.device_id))
            .where(
                col(DeviceState.last_fix_time) < silent_before,
                col(Device.disabled).is_(False),
                _of_an_active_organization(),
            )
        )
        return [(row[0], row[1]) for row in rows]

    async def mark_offline(self, silent_before: datetime) -> list[tuple[Any, ...]]:
        """Set ``offline_since`` to the last fix of every enabled device (of an organization
        not suspended) not marked yet whose last fix is older than ``silent_before``;
        ``(device_id, org_id, name, unique_id, last_fix_time, last_lat, last_lon)`` of each."""
        marked = await self.session.execute(
            update(DeviceState)
            .where(
                col(DeviceState.device_id) == col(Device.id),
                col(DeviceState.org_id) == col(Device.org_id),
                col(Device.disabled).is_(False),
                _of_an_active_organization(),
                col(DeviceState.offline_since).is_(None),
                col(DeviceState.last_fix_time) < silent_before,
            )
            .values(offline_since=col(DeviceState.last_fix_time))
            .returning(
                col(DeviceState.device_id),
                col(Device.org_id),
                col(Device.name),
                col(Device.unique_id),
                col(DeviceState.last_fix_time),
                col(DeviceState.last_lat),
                col(DeviceState.last_lon),
            )
            .execution_options(synchronize_session=False)
        )
        return [tuple(row) for row in marked]
