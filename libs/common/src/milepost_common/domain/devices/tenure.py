"""A device's tenures: a transfer to another organization moves future data only (stored
positions, trips, stops and alerts keep the organization they were recorded for), and a
device is deleted with its history only while that history is all its organization's.

Operators' use cases (the admin app), audited.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.alerts import service as alert_service
from milepost_common.domain.audit import service as audit
from milepost_common.domain.devices import state as device_state
from milepost_common.domain.devices.errors import (
    DeviceDeletionNotConfirmed,
    DeviceHoldsOtherHistory,
    DeviceLimitReached,
    DeviceNotFound,
)
from milepost_common.domain.devices.models import Device
from milepost_common.domain.devices.repository import DeviceRepository
from milepost_common.domain.organizations.errors import (
    OrganizationNotFound,
    OrganizationSuspended,
)
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.positions import service as position_service
from milepost_common.domain.principals import Principal
from milepost_common.domain.trips import service as trip_service
from milepost_common.domain.webhooks import delivery as webhook_delivery
from milepost_common.domain.webhooks import events as webhook_events

TRANSFER_ACTION = "devices.transfer"
_TICK = timedelta(microseconds=1)


async def transfer_device(
    session: AsyncSession, actor: Principal, device: Device, target: Organization
) -> Device:
    """Move a device to ``target`` for the data it sends from now on; what is stored stays
    with the old organization. Raises OrganizationSuspended or DeviceLimitReached (409),
    DeviceNotFound once deleted meanwhile (its organization's deletion included), or
    OrganizationNotFound once ``target`` is.

    The old tenure ends here: its open trip, stop and alert episodes end at its last
    processed fix (the old organization's webhooks get ``trip.ended`` with ``reason:
    transferred``, and ``alert.ended``), the device's
    state starts empty, and the new tenure (``assigned_at``) starts after every
    stored fix, so the worker, which reads and replaces only within the current tenure, can
    never join, move or delete a row of an earlier one. Idempotent for the current
    organization. Audited under the old organization."""
    if device.org_id == target.id:
        return device
    devices = DeviceRepository(session)
    # All read afresh under their locks: the target may have been suspended or deleted, and
    # the device moved by another transfer or deleted, since the caller read them. Both
    # organizations are locked before the device, the order of their deletion (the
    # organization, then its devices by cascade), so a transfer and a deletion wait for
    # each other instead of deadlocking; the source's deletion then took the device with it.
    orgs = await devices.lock_orgs({device.org_id, target.id})
    if target.id not in orgs:
        raise OrganizationNotFound()
    target = orgs[target.id]
    if target.suspended_at is not None:
        raise OrganizationSuspended("The receiving organization is suspended.")
    device = await _relock(devices, device)
    if device.org_id not in orgs:
        # Moved by another transfer meanwhile: where it is now is locked too (it cannot move
        # again while the device is locked).
        await devices.lock_orgs({device.org_id})
    # The worker's per-device lock: no batch of the old tenure is half-way through meanwhile.
    state = (await device_state.lock_device_states(session, {device.id: device.org_id}))[device.id]
    if device.org_id == target.id:
        return device
    if target.max_devices is not None and await devices.count_for_org(target.id) >= (
        target.max_devices
    ):
        raise DeviceLimitReached()
    source = device.org_id
    now = datetime.now(UTC)
    last_fix = await position_service.last_fix_time(session, device.id)
    ended = await trip_service.close_open_segments(session, device.id, source, state.last_fix_time)
    alerts = (
        await alert_service.end_open_alerts(session, device.id, source, state.last_fix_time)
        if state.last_fix_time is not None
        else []
    )
    # The old organization learns its trip and its open episodes ended; the vehicle has left
    # it (no name, no device.offline). The webhook sweep sends the deliveries.
    await webhook_delivery.create_deliveries(
        session,
        [
            *(
                webhook_events.trip_ended(t, None, webhook_events.TripEndReason.TRANSFERRED)
                for t in ended
            ),
            *(webhook_events.alert_ended(a, None) for a in alerts),
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


async def _relock(devices: DeviceRepository, device: Device) -> Device:
    """The device read afresh and locked, before its state (the per-device lock) in every
    change of a tenure, so that two of them take the two locks in one order. Raises
    DeviceNotFound once deleted meanwhile (instead of recreating its state for nothing)."""
    locked = await devices.relock(device)
    if locked is None:
        raise DeviceNotFound("Device not found.")
    return locked


async def holds_other_history(session: AsyncSession, device: Device) -> bool:
    """Whether the device still holds rows of an organization it has left. Only a device
    ever transferred (the append-only audit log says so) can; the others cost one lookup."""
    devices = DeviceRepository(session)
    if not await devices.was_audited(device.id, TRANSFER_ACTION):
        return False
    return await devices.has_rows_elsewhere(device)


async def delete_device(
    session: AsyncSession, actor: Principal, device: Device, *, confirm: str | None = None
) -> None:
    """Delete the device with its history (positions, trips, stops, alerts, state). Raises
    DeviceDeletionNotConfirmed (400) when ``confirm`` is given and is not its unique_id,
    DeviceNotFound when deleted meanwhile,
    DeviceHoldsOtherHistory (409) while it holds another organization's history (it was
    transferred; deleting would erase that organization's data). Audited
    (``devices.delete``, with what was deleted); the audit log keeps the record."""
    if confirm is not None and confirm != device.unique_id:
        raise DeviceDeletionNotConfirmed()
    device = await _relock(DeviceRepository(session), device)
    # The worker's per-device lock: no batch of the device is half-way through meanwhile.
    await device_state.lock_device_states(session, {device.id: device.org_id})
    if await holds_other_history(session, device):
        raise DeviceHoldsOtherHistory()
    devices = DeviceRepository(session)
    counts = await devices.count_history(device.id)
    # Positions carry no foreign key (partitioned): deleted here, the rest cascades.
    counts["positions"] = await devices.delete_positions(device.id)
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
