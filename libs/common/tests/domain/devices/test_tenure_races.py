"""A transfer racing other changes of the same device or of its receiving organization: what
one organization does to a vehicle never lands after the vehicle has left it, and a transfer
sees the device and the organization as they are when it runs, not as they were read."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlmodel import col, select

from milepost_common.db import Database, unit_of_work
from milepost_common.domain.audit.models import AuditEntry
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.devices import tenure as device_tenure
from milepost_common.domain.devices.errors import DeviceNotFound
from milepost_common.domain.devices.models import Device
from milepost_common.domain.devices.schemas import VehicleUpdate
from milepost_common.domain.organizations.errors import OrganizationSuspended
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.principals import SYSTEM
from milepost_common.domain.users.models import OrgRole
from milepost_common.testing.factories import (
    make_device,
    make_organization,
    make_user,
    principal_for,
)


async def _transfer_and_hold(
    committed_db: Database, device_id: uuid.UUID, target_id: uuid.UUID, release: asyncio.Event
) -> None:
    """Transfer the device, and commit only once ``release`` is set."""
    async with unit_of_work(committed_db) as session:
        device = await session.get(Device, device_id)
        target = await session.get(Organization, target_id)
        assert device is not None
        assert target is not None
        await device_tenure.transfer_device(session, SYSTEM, device, target)
        await release.wait()


async def test_a_rename_by_the_old_organization_lands_before_the_transfer_or_not_at_all(
    committed_db: Database,
) -> None:
    # The old owner's rename read the vehicle as still theirs and wrote it after the
    # transfer had committed: the new organization's vehicle carried the name the old one
    # chose, audited under the old one.
    async with unit_of_work(committed_db) as session:
        old, new = await make_organization(session), await make_organization(session)
        device = await make_device(session, old, name="Van 1")
        manager = principal_for(await make_user(session, old, role=OrgRole.MANAGER))
    release = asyncio.Event()
    transferring = asyncio.create_task(_transfer_and_hold(committed_db, device.id, new.id, release))
    await asyncio.sleep(0.3)

    async def rename() -> str:
        async with unit_of_work(committed_db) as session:
            try:
                await device_service.update_device(
                    session, manager, device.id, VehicleUpdate(name="Old org's van")
                )
            except DeviceNotFound:
                return "not_found"
        return "renamed"

    renaming = asyncio.create_task(rename())
    await asyncio.sleep(0.3)
    release.set()
    await transferring

    assert await renaming == "not_found"
    async with unit_of_work(committed_db) as session:
        stored = await session.get(Device, device.id)
        assert stored is not None
        assert (stored.org_id, stored.name) == (new.id, "Van 1")


async def test_two_transfers_at_once_each_move_the_device_from_where_it_is(
    committed_db: Database,
) -> None:
    # Two operators moved one device at once (A → B, A → C): the second, working from its
    # read of the device in A, recorded A → C under A, so B never saw the vehicle leave it
    # (nor had its open trip and episodes ended).
    async with unit_of_work(committed_db) as session:
        a, b, c = [await make_organization(session) for _ in range(3)]
        device = await make_device(session, a)
    release, no_wait = asyncio.Event(), asyncio.Event()
    no_wait.set()
    first = asyncio.create_task(_transfer_and_hold(committed_db, device.id, b.id, release))
    await asyncio.sleep(0.3)
    second = asyncio.create_task(_transfer_and_hold(committed_db, device.id, c.id, no_wait))
    await asyncio.sleep(0.3)
    release.set()
    await asyncio.gather(first, second)

    async with unit_of_work(committed_db) as session:
        stored = await session.get(Device, device.id)
        query = select(AuditEntry).where(
            col(AuditEntry.action) == device_tenure.TRANSFER_ACTION,
            col(AuditEntry.target_id) == str(device.id),
        )
        moves = [(e.org_id, e.diff["org_id"]) for e in await session.scalars(query)]
    assert stored is not None
    assert stored.org_id == c.id
    assert sorted(moves, key=lambda m: m[1][1] == str(c.id)) == [
        (a.id, [str(a.id), str(b.id)]),
        (b.id, [str(b.id), str(c.id)]),
    ]


async def test_a_transfer_into_an_organization_suspended_meanwhile_is_refused(
    committed_db: Database,
) -> None:
    # The receiving organization was read before its suspension committed: the device moved
    # into a suspended organization, which transfers refuse.
    async with unit_of_work(committed_db) as session:
        source, target = await make_organization(session), await make_organization(session)
        device = await make_device(session, source)
    async with unit_of_work(committed_db) as session:
        stale_target = await session.get(Organization, target.id)
        stored = await session.get(Device, device.id)
        assert stale_target is not None
        assert stored is not None
        async with unit_of_work(committed_db) as other:
            suspended = await other.get(Organization, target.id)
            assert suspended is not None
            suspended.suspended_at = datetime.now(UTC)
            other.add(suspended)

        with pytest.raises(OrganizationSuspended):
            await device_tenure.transfer_device(session, SYSTEM, stored, stale_target)


async def test_a_transfer_of_a_device_deleted_meanwhile_is_not_found(
    committed_db: Database,
) -> None:
    # The transfer waited for the deletion's per-device lock, then tried to create the
    # device's state again for a device no longer there: a foreign-key error, a 500.
    async with unit_of_work(committed_db) as session:
        source, target = await make_organization(session), await make_organization(session)
        device = await make_device(session, source)
    release = asyncio.Event()

    async def delete() -> None:
        async with unit_of_work(committed_db) as session:
            stored = await session.get(Device, device.id)
            assert stored is not None
            await device_tenure.delete_device(session, SYSTEM, stored)
            await release.wait()

    deleting = asyncio.create_task(delete())
    await asyncio.sleep(0.3)
    transferring = asyncio.create_task(
        _transfer_and_hold(committed_db, device.id, target.id, asyncio.Event())
    )
    await asyncio.sleep(0.3)
    release.set()
    await deleting

    with pytest.raises(DeviceNotFound):
        await transferring
