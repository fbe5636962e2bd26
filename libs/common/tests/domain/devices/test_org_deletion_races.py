"""A transfer racing the hard deletion of the organization it moves the device from or to:
the loser answers 404 (or the documented 409), never a 500 from a deadlock or a row gone."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from milepost_common.db import Database, unit_of_work
from milepost_common.domain.devices import tenure as device_tenure
from milepost_common.domain.devices.errors import DeviceNotFound
from milepost_common.domain.devices.models import Device
from milepost_common.domain.organizations import service as org_service
from milepost_common.domain.organizations.errors import (
    OrganizationNotFound,
    OrganizationNotSuspended,
)
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.principals import SYSTEM
from milepost_common.domain.webhooks.models import WebhookEndpoint
from milepost_common.testing.factories import (
    make_device,
    make_device_state,
    make_organization,
    make_trip,
)

NOW = datetime.now(UTC)


async def _transfer(
    committed_db: Database,
    device_id: uuid.UUID,
    target_id: uuid.UUID,
    release: asyncio.Event | None = None,
) -> None:
    """Transfer as the admin route does; commit once ``release`` is set."""
    async with unit_of_work(committed_db) as session:
        device = await session.get(Device, device_id)
        assert device is not None
        target = await org_service.get_organization(session, target_id)
        await device_tenure.transfer_device(session, SYSTEM, device, target)
        if release is not None:
            await release.wait()


async def _delete(
    committed_db: Database,
    org_id: uuid.UUID,
    locked: asyncio.Event | None = None,
    release: asyncio.Event | None = None,
) -> None:
    """Delete as the admin route does (the organization loaded locked first); set ``locked``
    once it is, and wait for ``release`` before deleting."""
    async with unit_of_work(committed_db) as session:
        org = await org_service.get_organization(session, org_id, for_update=True)
        if locked is not None:
            locked.set()
        if release is not None:
            await release.wait()
        await org_service.delete_organization(session, SYSTEM, org, org.name)


async def _moving_device(committed_db: Database) -> tuple[Organization, Organization, Device]:
    """A device of a suspended organization on an open trip, whose end the organization's
    webhook hears of; and an active organization to move it to."""
    async with unit_of_work(committed_db) as session:
        source = await make_organization(session, suspended_at=NOW)
        target = await make_organization(session)
        device = await make_device(session, source)
        await make_device_state(session, device, last_fix_time=NOW - timedelta(minutes=1))
        await make_trip(session, device, NOW - timedelta(minutes=10))
        session.add(
            WebhookEndpoint(
                org_id=source.id,
                url="https://hooks.example/x",
                secret_encrypted="x",
                event_types=["trip.ended"],
            )
        )
    return source, target, device


async def test_a_transfer_from_an_organization_being_deleted_is_not_found(
    committed_db: Database,
) -> None:
    # The deletion held the organization while it deleted its positions; the transfer locked
    # the device and then waited for the organization (its webhook's delivery refers to it),
    # while the deletion waited for the device: a deadlock, and a 500 for one of them.
    source, target, device = await _moving_device(committed_db)
    locked, release = asyncio.Event(), asyncio.Event()
    deleting = asyncio.create_task(_delete(committed_db, source.id, locked, release))
    await locked.wait()
    transferring = asyncio.create_task(_transfer(committed_db, device.id, target.id))
    await asyncio.sleep(0.3)
    release.set()
    await deleting

    with pytest.raises(DeviceNotFound):
        await transferring
    async with unit_of_work(committed_db) as session:
        assert await session.get(Device, device.id) is None


async def test_a_deletion_waits_for_a_transfer_away_and_leaves_the_device(
    committed_db: Database,
) -> None:
    source, target, device = await _moving_device(committed_db)
    release = asyncio.Event()
    transferring = asyncio.create_task(_transfer(committed_db, device.id, target.id, release))
    await asyncio.sleep(0.3)
    deleting = asyncio.create_task(_delete(committed_db, source.id))
    await asyncio.sleep(0.3)
    release.set()
    await asyncio.gather(transferring, deleting)

    async with unit_of_work(committed_db) as session:
        assert await session.get(Organization, source.id) is None
        stored = await session.get(Device, device.id)
        assert stored is not None
        assert stored.org_id == target.id


async def test_a_transfer_into_an_organization_deleted_meanwhile_is_not_found(
    committed_db: Database,
) -> None:
    # The transfer read the receiving organization, then waited for its deletion and read
    # it afresh: a row no longer there, a 500.
    async with unit_of_work(committed_db) as session:
        source = await make_organization(session)
        target = await make_organization(session, suspended_at=NOW)
        device = await make_device(session, source)
    locked, release = asyncio.Event(), asyncio.Event()
    deleting = asyncio.create_task(_delete(committed_db, target.id, locked, release))
    await locked.wait()
    transferring = asyncio.create_task(_transfer(committed_db, device.id, target.id))
    await asyncio.sleep(0.3)
    release.set()
    await deleting

    with pytest.raises(OrganizationNotFound):
        await transferring
    async with unit_of_work(committed_db) as session:
        stored = await session.get(Device, device.id)
        assert stored is not None
        assert stored.org_id == source.id


async def test_a_deletion_of_the_receiving_organization_during_a_transfer_is_refused(
    committed_db: Database,
) -> None:
    async with unit_of_work(committed_db) as session:
        source, target = await make_organization(session), await make_organization(session)
        device = await make_device(session, source)
    release = asyncio.Event()
    transferring = asyncio.create_task(_transfer(committed_db, device.id, target.id, release))
    await asyncio.sleep(0.3)
    deleting = asyncio.create_task(_delete(committed_db, target.id))
    await asyncio.sleep(0.3)
    release.set()
    await transferring

    with pytest.raises(OrganizationNotSuspended):
        await deleting
