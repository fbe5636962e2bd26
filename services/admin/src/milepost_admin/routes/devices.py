"""Devices of every organization: register one or many (CSV), edit, delete, transfer,
disable."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query

from milepost_admin.deps import AUTH_ERRORS, OperatorUser, SupportUser
from milepost_common.domain.devices import imports as device_imports
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.devices import tenure as device_tenure
from milepost_common.domain.devices.errors import (
    DeviceDeletionNotConfirmed,
    DeviceHoldsOtherHistory,
    DeviceLimitReached,
    DeviceNotFound,
    DeviceUniqueIdTaken,
)
from milepost_common.domain.devices.models import Device
from milepost_common.domain.devices.schemas import (
    DeviceFilters,
    DeviceImportReport,
    DeviceRead,
    DeviceTransfer,
    DeviceUpdate,
    VehicleCreate,
)
from milepost_common.domain.organizations import service as org_service
from milepost_common.domain.organizations.errors import (
    OrganizationNotFound,
    OrganizationSuspended,
)
from milepost_common.errors import (
    BadRequest,
    PayloadTooLarge,
    ValidationFailed,
)
from milepost_common.pagination import Page
from milepost_common.web.deps import SessionDep
from milepost_common.web.errors import error_responses

router = APIRouter(prefix="/v1", tags=["devices"])


async def load_device(device_id: uuid.UUID, session: SessionDep) -> Device:
    return await device_service.get_any_device(session, device_id)


DeviceDep = Annotated[Device, Depends(load_device)]


@router.post(
    "/organizations/{org_id}/devices",
    status_code=201,
    summary="Register a device",
    responses=error_responses(
        *AUTH_ERRORS,
        OrganizationNotFound,
        DeviceUniqueIdTaken,
        DeviceLimitReached,
        ValidationFailed,
    ),
)
async def register_device(
    user: OperatorUser, org_id: uuid.UUID, body: VehicleCreate, session: SessionDep
) -> DeviceRead:
    org = await org_service.get_organization(session, org_id)
    device = await device_service.register_device(session, user, body, org_id=org.id)
    return DeviceRead.model_validate(device)


@router.post(
    "/organizations/{org_id}/devices/import",
    summary="Register devices from CSV, with a report per line",
    description="Body: `text/csv` with the header `unique_id,name,plate,speed_limit_kmh` "
    "(plate and speed limit optional). Valid lines are registered, the others reported "
    "with a code: `invalid_field`, `duplicate_in_file`, `unique_id_taken`, `device_limit`.",
    responses=error_responses(
        *AUTH_ERRORS, OrganizationNotFound, BadRequest, PayloadTooLarge, ValidationFailed
    ),
)
async def import_devices(
    user: OperatorUser,
    org_id: uuid.UUID,
    body: Annotated[str, Body(media_type="text/csv")],
    session: SessionDep,
) -> DeviceImportReport:
    org = await org_service.get_organization(session, org_id)
    return await device_imports.import_devices(session, user, org, body)


@router.get(
    "/organizations/{org_id}/devices",
    summary="List an organization's devices",
    responses=error_responses(*AUTH_ERRORS, OrganizationNotFound),
)
async def list_organization_devices(
    _user: SupportUser,
    org_id: uuid.UUID,
    filters: Annotated[DeviceFilters, Query()],
    session: SessionDep,
) -> Page[DeviceRead]:
    org = await org_service.get_organization(session, org_id)
    page = await device_service.list_devices(session, filters.model_copy(update={"org_id": org.id}))
    return Page(
        items=[DeviceRead.model_validate(d) for d in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/devices",
    summary="Search devices of every organization",
    responses=error_responses(*AUTH_ERRORS),
)
async def list_devices(
    _user: SupportUser, filters: Annotated[DeviceFilters, Query()], session: SessionDep
) -> Page[DeviceRead]:
    page = await device_service.list_devices(session, filters)
    return Page(
        items=[DeviceRead.model_validate(d) for d in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/devices/{device_id}",
    summary="Read a device",
    responses=error_responses(*AUTH_ERRORS, DeviceNotFound),
)
async def get_device(_user: SupportUser, device: DeviceDep) -> DeviceRead:
    return DeviceRead.model_validate(device)


@router.patch(
    "/devices/{device_id}",
    summary="Edit a device's name, plate or speed limit",
    description="Only the fields sent change; `null` clears the plate or the speed limit. "
    "Audited (`devices.update`).",
    responses=error_responses(*AUTH_ERRORS, DeviceNotFound, ValidationFailed),
)
async def update_device(
    user: OperatorUser, device: DeviceDep, body: DeviceUpdate, session: SessionDep
) -> DeviceRead:
    return DeviceRead.model_validate(
        await device_service.update_device_for_operator(session, user, device, body)
    )


@router.delete(
    "/devices/{device_id}",
    status_code=204,
    summary="Delete a device with its history",
    description="Deletes the device with its positions, trips, stops and alerts. Irreversible; "
    "the audit log keeps the record (`devices.delete`). `confirm`, when given, must be the "
    "device's `unique_id` (the console always sends it). Refused (409) while the device holds "
    "another organization's history (it was transferred: deleting it would erase that "
    "organization's data).",
    responses=error_responses(
        *AUTH_ERRORS,
        DeviceNotFound,
        DeviceDeletionNotConfirmed,
        DeviceHoldsOtherHistory,
        ValidationFailed,
    ),
)
async def delete_device(
    user: OperatorUser,
    device: DeviceDep,
    session: SessionDep,
    confirm: Annotated[
        str | None, Query(max_length=128, description="The device's unique_id.")
    ] = None,
) -> None:
    await device_tenure.delete_device(session, user, device, confirm=confirm)


@router.post(
    "/devices/{device_id}/transfer",
    summary="Transfer a device to another organization (future data only)",
    responses=error_responses(
        *AUTH_ERRORS,
        DeviceNotFound,
        OrganizationNotFound,
        OrganizationSuspended,
        DeviceLimitReached,
    ),
)
async def transfer_device(
    user: OperatorUser, device: DeviceDep, body: DeviceTransfer, session: SessionDep
) -> DeviceRead:
    target = await org_service.get_organization(session, body.org_id)
    return DeviceRead.model_validate(
        await device_tenure.transfer_device(session, user, device, target)
    )


@router.post(
    "/devices/{device_id}/disable",
    summary="Disable a device (idempotent; its fixes are rejected)",
    responses=error_responses(*AUTH_ERRORS, DeviceNotFound),
)
async def disable_device(user: OperatorUser, device: DeviceDep, session: SessionDep) -> DeviceRead:
    return DeviceRead.model_validate(
        await device_service.set_device_disabled(session, user, device, True)
    )


@router.post(
    "/devices/{device_id}/enable",
    summary="Enable a device (idempotent)",
    responses=error_responses(*AUTH_ERRORS, DeviceNotFound),
)
async def enable_device(user: OperatorUser, device: DeviceDep, session: SessionDep) -> DeviceRead:
    return DeviceRead.model_validate(
        await device_service.set_device_disabled(session, user, device, False)
    )
