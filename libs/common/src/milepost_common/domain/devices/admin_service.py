"""Operator-side device functions: across organizations, CSV import, transfer, disable,
edit, delete.

Registration of a single device is ``devices.service.register_device`` (with ``org_id``);
these are the operator's additions. A transfer moves future data only: stored positions,
trips, stops and alerts keep the organization they were recorded for.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import delete, func, or_, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain import paging
from milepost_common.domain.alerts.models import Alert
from milepost_common.domain.audit import service as audit
from milepost_common.domain.audit.models import AuditEntry
from milepost_common.domain.devices import state as device_state
from milepost_common.domain.devices.admin_schemas import (
    IMPORT_COLUMNS,
    MAX_IMPORT_ROWS,
    DeviceFilters,
    DeviceImportReport,
    DeviceUpdate,
    ImportRow,
    ImportRowCode,
    ImportRowStatus,
)
from milepost_common.domain.devices.errors import (
    DeviceDeletionNotConfirmed,
    DeviceHoldsOtherHistory,
    DeviceLimitReached,
    DeviceNotFound,
)
from milepost_common.domain.devices.models import Device
from milepost_common.domain.devices.schemas import VehicleCreate
from milepost_common.domain.organizations import repository as org_repository
from milepost_common.domain.organizations.errors import OrganizationSuspended
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.positions import service as position_service
from milepost_common.domain.positions.models import Position
from milepost_common.domain.principals import Principal
from milepost_common.domain.trips import service as trip_service
from milepost_common.domain.trips.models import Stop, Trip
from milepost_common.domain.webhooks import delivery as webhook_delivery
from milepost_common.domain.webhooks import events as webhook_events
from milepost_common.errors import BadRequest, PayloadTooLarge

TRANSFER_ACTION = "devices.transfer"
_TICK = timedelta(microseconds=1)


async def get_any_device(session: AsyncSession, device_id: uuid.UUID) -> Device:
    """A device of any organization. Raises DeviceNotFound."""
    device = await session.get(Device, device_id)
    if device is None:
        raise DeviceNotFound("Device not found.")
    return device


async def list_devices(session: AsyncSession, filters: DeviceFilters) -> paging.PageResult[Device]:
    """A keyset page of devices of every organization (or one, or those named like
    ``org_name``), by the filters' sort."""
    query = select(Device)
    if filters.org_id is not None:
        query = query.where(Device.org_id == filters.org_id)
    if filters.org_name:
        query = query.where(col(Device.org_id).in_(org_repository.ids_named(filters.org_name)))
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
    return await paging.sorted_page(
        session, query, Device, filters.sort, limit=filters.limit, cursor=filters.cursor
    )


async def suggest_devices(session: AsyncSession, part: str, *, limit: int = 10) -> list[Device]:
    """Up to ``limit`` devices whose unique id or name contains ``part``, those whose unique
    id or name starts with it first: suggestions for a search box."""
    part = part.strip()
    if not part:
        return []
    unique_id, name = col(Device.unique_id), col(Device.name)
    starts = or_(
        unique_id.istartswith(part, autoescape=True), name.istartswith(part, autoescape=True)
    )
    query = (
        select(Device)
        .where(
            or_(unique_id.icontains(part, autoescape=True), name.icontains(part, autoescape=True))
        )
        .order_by(starts.desc(), unique_id)
        .limit(limit)
    )
    return list((await session.scalars(query)).all())


async def count_devices(session: AsyncSession, org_id: uuid.UUID) -> int:
    """How many devices the organization has now."""
    query = select(func.count()).select_from(Device).where(Device.org_id == org_id)
    return int(await session.scalar(query) or 0)


def _failure(line: int, unique_id: str | None, code: ImportRowCode, message: str) -> ImportRow:
    return ImportRow(
        line=line, unique_id=unique_id, status=ImportRowStatus.FAILED, code=code, message=message
    )


def _parse_rows(text: str) -> list[tuple[int, dict[str, str]]]:
    """The non-blank rows by line number. Raises BadRequest for a file the csv module cannot
    read (a field over its size limit, a stray quote or NUL) or without the header."""
    try:
        return _read_rows(text)
    except csv.Error as exc:
        raise BadRequest(f"The CSV cannot be read: {exc}.") from None


def _read_rows(text: str) -> list[tuple[int, dict[str, str]]]:
    # newline="": lines end in \n, \r\n or a lone \r (as the csv module expects its input).
    source = io.StringIO(text.lstrip("\ufeff"), newline="")
    reader = csv.DictReader(source, skipinitialspace=True)
    header = [name.strip() for name in reader.fieldnames or []]
    if "unique_id" not in header or "name" not in header:
        raise BadRequest(
            "The CSV needs a header line with at least unique_id and name "
            f"(known columns: {', '.join(IMPORT_COLUMNS)})."
        )
    reader.fieldnames = header
    rows: list[tuple[int, dict[str, str]]] = []
    for record in reader:
        if len(rows) >= MAX_IMPORT_ROWS:
            raise PayloadTooLarge(f"At most {MAX_IMPORT_ROWS} devices per import.")
        values = {k: (v or "").strip() for k, v in record.items() if k in IMPORT_COLUMNS}
        if any(values.values()):
            rows.append((reader.line_num, values))
    return rows


async def import_devices(
    session: AsyncSession, actor: Principal, org: Organization, text: str
) -> DeviceImportReport:
    """Register every valid row of a CSV (``unique_id,name[,plate][,speed_limit_kmh]``);
    the others are reported with a code, line by line. Raises BadRequest without the
    header and PayloadTooLarge over 10,000 rows. Audited once (``devices.import``)."""
    parsed = _parse_rows(text)
    candidates: list[tuple[int, VehicleCreate]] = []
    report: dict[int, ImportRow] = {}
    seen: set[str] = set()
    for line, values in parsed:
        unique_id = values.get("unique_id") or None
        try:
            data = VehicleCreate.model_validate(
                {name: values.get(name) or None for name in IMPORT_COLUMNS}
            )
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            report[line] = _failure(
                line, unique_id, ImportRowCode.INVALID_FIELD, f"{where}: {problem['msg']}"
            )
            continue
        if data.unique_id in seen:
            report[line] = _failure(
                line, data.unique_id, ImportRowCode.DUPLICATE_IN_FILE, "Repeated in this file."
            )
            continue
        seen.add(data.unique_id)
        candidates.append((line, data))

    taken: set[str] = set()
    if candidates:
        wanted = [data.unique_id for _, data in candidates]
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start : start + 1000]
            query = select(col(Device.unique_id)).where(col(Device.unique_id).in_(chunk))
            taken.update((await session.scalars(query)).all())

    await session.refresh(org, with_for_update=True)
    room = (
        None if org.max_devices is None else org.max_devices - await count_devices(session, org.id)
    )
    devices: list[tuple[int, Device]] = []
    for line, data in candidates:
        if data.unique_id in taken:
            report[line] = _failure(
                line, data.unique_id, ImportRowCode.UNIQUE_ID_TAKEN, "This unique_id is in use."
            )
        elif room is not None and len(devices) >= room:
            report[line] = _failure(
                line, data.unique_id, ImportRowCode.DEVICE_LIMIT, DeviceLimitReached.default_message
            )
        else:
            devices.append((line, Device(org_id=org.id, **data.model_dump())))
    session.add_all([device for _, device in devices])
    await session.flush()
    for line, device in devices:
        report[line] = ImportRow(
            line=line,
            unique_id=device.unique_id,
            status=ImportRowStatus.CREATED,
            device_id=device.id,
        )
    result = DeviceImportReport(
        created=len(devices),
        failed=len(report) - len(devices),
        rows=[report[line] for line in sorted(report)],
    )
    await audit.record(
        session,
        actor,
        "devices.import",
        target_type="organization",
        target_id=org.id,
        org_id=org.id,
        diff={
            "created": result.created,
            "failed": result.failed,
            "unique_ids": [device.unique_id for _, device in devices][:1000],
        },
    )
    return result


async def transfer_device(
    session: AsyncSession, actor: Principal, device: Device, target: Organization
) -> Device:
    """Move a device to ``target`` for the data it sends from now on; what is stored stays
    with the old organization. Raises OrganizationSuspended or DeviceLimitReached (409).

    The old tenure ends here: its open trip and stop end at its last processed fix (the old
    organization's webhooks get ``trip.ended`` with ``reason: transferred``), the device's
    state starts empty, and the new tenure (``assigned_at``) starts after every
    stored fix, so the worker, which reads and replaces only within the current tenure, can
    never join, move or delete a row of an earlier one. Idempotent for the current
    organization. Audited under the old organization."""
    if device.org_id == target.id:
        return device
    if target.suspended_at is not None:
        raise OrganizationSuspended("The receiving organization is suspended.")
    await session.refresh(target, with_for_update=True)
    if target.max_devices is not None and await count_devices(session, target.id) >= (
        target.max_devices
    ):
        raise DeviceLimitReached()
    source = device.org_id
    now = datetime.now(UTC)
    # The worker's per-device lock: no batch of the old tenure is half-way through meanwhile.
    state = (await device_state.lock_device_states(session, {device.id: source}))[device.id]
    last_fix = await position_service.last_fix_time(session, device.id)
    ended = await trip_service.close_open_segments(session, device.id, source, state.last_fix_time)
    # The old organization learns its trip ended; the vehicle has left it (no name, no
    # device.offline). The webhook sweep sends the deliveries.
    await webhook_delivery.create_deliveries(
        session,
        [
            webhook_events.trip_ended(t, None, webhook_events.TripEndReason.TRANSFERRED)
            for t in ended
        ],
        now,
    )
    device_state.reset(state, target.id)
    device.org_id = target.id
    # Strictly after every stored fix: nothing already stored can fall in the new tenure.
    device.assigned_at = max(now, last_fix + _TICK) if last_fix is not None else now
    device.updated_at = now
    session.add_all([device, state])
    await session.flush()
    await audit.record(
        session,
        actor,
        TRANSFER_ACTION,
        target_type="device",
        target_id=device.id,
        org_id=source,
        diff={"org_id": [str(source), str(target.id)], "unique_id": device.unique_id},
    )
    return device


async def set_device_disabled(
    session: AsyncSession, actor: Principal, device: Device, disabled: bool
) -> Device:
    """Idempotent. A disabled device's fixes are rejected at ingest. Audited on change."""
    if device.disabled == disabled:
        return device
    device.disabled = disabled
    device.updated_at = datetime.now(UTC)
    session.add(device)
    await session.flush()
    await audit.record(
        session,
        actor,
        "devices.disable" if disabled else "devices.enable",
        target_type="device",
        target_id=device.id,
        org_id=device.org_id,
        diff={"disabled": [not disabled, disabled]},
    )
    return device


async def update_device(
    session: AsyncSession, actor: Principal, device: Device, data: DeviceUpdate
) -> Device:
    """Change the fields sent (``name: null`` is ignored; ``null`` clears plate and speed
    limit). Audited (``devices.update``, under the device's organization) when something
    changed."""
    sent = data.model_dump(exclude_unset=True)
    if sent.get("name", "") is None:
        del sent["name"]
    diff = audit.changes({name: getattr(device, name) for name in sent}, sent)
    if not diff:
        return device
    for name, value in sent.items():
        setattr(device, name, value)
    device.updated_at = datetime.now(UTC)
    session.add(device)
    await session.flush()
    await audit.record(
        session,
        actor,
        "devices.update",
        target_type="device",
        target_id=device.id,
        org_id=device.org_id,
        diff=diff,
    )
    return device


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


async def holds_other_history(session: AsyncSession, device: Device) -> bool:
    """Whether the device still holds rows of an organization it has left. Only a device
    ever transferred (the append-only audit log says so) can; the others cost one lookup."""
    transferred = select(col(AuditEntry.id)).where(
        AuditEntry.action == TRANSFER_ACTION, AuditEntry.target_id == str(device.id)
    )
    if (await session.scalars(transferred.limit(1))).first() is None:
        return False
    found = await session.scalar(_HISTORY_ELSEWHERE, {"d": device.id, "org": device.org_id})
    return bool(found)


async def delete_device(
    session: AsyncSession, actor: Principal, device: Device, *, confirm: str | None = None
) -> None:
    """Delete the device with its history (positions, trips, stops, alerts, state). Raises
    DeviceDeletionNotConfirmed (400) when ``confirm`` is given and is not its unique_id,
    DeviceHoldsOtherHistory (409) while it holds another organization's history (it was
    transferred; deleting would erase that organization's data). Audited
    (``devices.delete``, with what was deleted); the audit log keeps the record."""
    if confirm is not None and confirm != device.unique_id:
        raise DeviceDeletionNotConfirmed()
    # The worker's per-device lock: no batch of the device is half-way through meanwhile.
    await device_state.lock_device_states(session, {device.id: device.org_id})
    if await holds_other_history(session, device):
        raise DeviceHoldsOtherHistory()
    counts: dict[str, int] = {}
    for table in (Trip, Stop, Alert):
        query = select(func.count()).select_from(table).where(col(table.device_id) == device.id)
        counts[table.__tablename__] = int(await session.scalar(query) or 0)
    # Positions carry no foreign key (partitioned): through the primary key's device column.
    removed = await session.execute(delete(Position).where(col(Position.device_id) == device.id))
    counts["positions"] = int(getattr(removed, "rowcount", 0) or 0)
    await audit.record(
        session,
        actor,
        "devices.delete",
        target_type="device",
        target_id=device.id,
        org_id=device.org_id,
        diff={"unique_id": device.unique_id, "name": device.name, "deleted": counts},
    )
    # Trips, stops, alerts, checkpoints and the state refer to it with ON DELETE CASCADE.
    await session.delete(device)
    await session.flush()
