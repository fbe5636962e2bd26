"""Devices: list, register, CSV import, a device's page (where it is, its trips and alerts),
edit, delete, transfer, disable."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_admin.console.deps import Console, ConsoleDep, ConsoleOperator, StoreDep, parse_uuid
from milepost_admin.console.pages.maps import LEAFLET
from milepost_admin.console.pages.organizations import organization_again
from milepost_admin.console.render import flash, page, see_other
from milepost_admin.console.routing import ConsoleRoute, FormState, shown_on
from milepost_admin.console.sessions import SessionStore
from milepost_admin.console.views import again, filters_of, form_model, invalid, list_page
from milepost_common.domain import paging
from milepost_common.domain.alerts import service as alert_service
from milepost_common.domain.alerts.schemas import AlertFilters
from milepost_common.domain.audit import service as audit
from milepost_common.domain.audit.schemas import AuditFilters, AuditSort
from milepost_common.domain.devices import imports as device_imports
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.devices import state as device_state
from milepost_common.domain.devices import tenure as device_tenure
from milepost_common.domain.devices.errors import DeviceDeletionNotConfirmed, DeviceUniqueIdTaken
from milepost_common.domain.devices.schemas import (
    DeviceFilters,
    DeviceImportReport,
    DeviceUpdate,
    VehicleCreate,
)
from milepost_common.domain.organizations import service as org_service
from milepost_common.domain.trips import service as trip_service
from milepost_common.domain.trips.schemas import TripRead
from milepost_common.errors import ValidationFailed
from milepost_common.web.deps import SessionDep

router = APIRouter(route_class=ConsoleRoute)
LATEST = 10  # trips and alerts on a device's page


@router.get("/devices", response_class=HTMLResponse)
async def devices_page(
    request: Request, console: ConsoleDep, store: StoreDep, session: SessionDep
) -> HTMLResponse:
    filters = await filters_of(request, store, console, DeviceFilters, default_sort="-created_at")
    result = await device_service.list_devices(session, filters)
    seen = await device_state.last_seen(session, [d.id for d in result.items])
    return await list_page(request, store, console, session, "devices", filters, result, seen=seen)


@router.post("/organizations/{org_id}/devices", response_model=None)
@shown_on("new-device", organization_again, fields={DeviceUniqueIdTaken: "unique_id"})
async def device_create(
    org_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    unique_id: Annotated[str, Form()],
    name: Annotated[str, Form()],
    plate: Annotated[str, Form()] = "",
    speed_limit_kmh: Annotated[str, Form()] = "",
) -> Response:
    org = await org_service.get_organization(session, org_id)
    data = form_model(
        VehicleCreate,
        {
            "unique_id": unique_id.strip(),
            "name": name,
            "plate": plate,
            "speed_limit_kmh": speed_limit_kmh,
        },
    )
    device = await device_service.register_device(session, console.principal, data, org_id=org.id)
    await flash(store, console, "ok", f"Device {device.unique_id} registered.")
    return see_other(f"/admin/devices/{device.id}")


@router.post("/organizations/{org_id}/devices/import", response_model=None)
@shown_on("import-devices", organization_again)
async def device_import(
    org_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    csv_file: Annotated[UploadFile, File()],
) -> Response:
    org = await org_service.get_organization(session, org_id)
    # The request's body limit (MILEPOST_ADMIN__MAX_IMPORT_BODY_BYTES) bounds the file.
    raw = await csv_file.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # As the JSON API refuses it: another encoding's accents would be stored mangled.
        message = 'The file is not UTF-8 text: save it as "CSV UTF-8" and import it again.'
        raise ValidationFailed(
            message, details=[{"loc": ["csv_file"], "msg": message, "type": "value_error"}]
        ) from None
    report = await device_imports.import_devices(session, console.principal, org, text)
    # The report is kept beside the session (10 minutes) and shown by the redirect's page:
    # a reload of that page shows it again and imports nothing twice.
    await store.keep(
        console.token, "import", {"org_id": str(org.id), **report.model_dump(mode="json")}
    )
    return see_other(f"/admin/organizations/{org.id}/devices/import")


@router.get("/organizations/{org_id}/devices/import", response_class=HTMLResponse)
async def device_import_report(
    request: Request,
    org_id: uuid.UUID,
    console: ConsoleDep,
    store: StoreDep,
    session: SessionDep,
) -> HTMLResponse:
    org = await org_service.get_organization(session, org_id)
    kept = await store.peek(console.token, "import")
    report = (
        DeviceImportReport.model_validate(kept)
        if kept is not None and kept.get("org_id") == str(org.id)
        else None
    )
    return await page(
        request,
        store,
        console,
        "import_report.html",
        {"section": "devices", "org": org, "report": report},
    )


async def _device(
    request: Request,
    device_id: uuid.UUID,
    console: Console,
    store: SessionStore,
    session: AsyncSession,
    form: FormState | None = None,
) -> HTMLResponse:
    device = await device_service.get_any_device(session, device_id)
    history = await audit.list_audit_entries(
        session, AuditFilters(target_id=str(device.id), limit=20, sort=AuditSort.OCCURRED_AT_DESC)
    )
    # Its current organization's latest trips and alerts, newest first.
    newest = paging.Window()
    trips = await trip_service.list_org_segments(
        session, TripRead, device.org_id, device.id, newest, _newest("start_time")
    )
    alerts = await alert_service.list_org_alerts(
        session, device.org_id, AlertFilters(device.id), newest, _newest("occurred_at")
    )
    state = await device_state.find_state(session, device.id)
    last_seen = state.last_fix_time if state else None
    admin = request.app.state.settings.admin
    return await page(
        request,
        store,
        console,
        "device.html",
        {
            "section": "devices",
            "device": device,
            "org": await org_service.get_organization(session, device.org_id),
            "history": history,
            "position": state if last_seen else None,
            "last_seen": last_seen,
            "status": device_service.status_of(last_seen).value,
            "trips": trips.items,
            "alerts": alerts.items,
            "leaflet": LEAFLET,
            "tile_url": admin.map_tile_url,
            "tile_attribution": admin.map_tile_attribution,
            "form": form,
        },
    )


async def device_again(request: Request, form: FormState) -> HTMLResponse:
    """The device's page with one of its forms' values and errors."""
    async with again(request) as (session, console, store):
        device_id = uuid.UUID(str(request.path_params["device_id"]))
        return await _device(request, device_id, console, store, session, form)


@router.get("/devices/{device_id}", response_class=HTMLResponse)
async def device_page(
    request: Request,
    device_id: uuid.UUID,
    console: ConsoleDep,
    store: StoreDep,
    session: SessionDep,
) -> HTMLResponse:
    return await _device(request, device_id, console, store, session)


def _newest(field: str) -> paging.PageRequest:
    return paging.PageRequest(limit=LATEST, sort=paging.Sort(field, descending=True))


@router.post("/devices/{device_id}/transfer", response_model=None)
async def device_transfer(
    device_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    org_id: Annotated[str, Form()],
) -> Response:
    target_id = parse_uuid(org_id.strip())
    if target_id is None:
        raise ValidationFailed("Give the receiving organization's id.")
    device = await device_service.get_any_device(session, device_id)
    target = await org_service.get_organization(session, target_id)
    await device_tenure.transfer_device(session, console.principal, device, target)
    await flash(store, console, "ok", f"Device transferred to “{target.name}” (future data).")
    return see_other(f"/admin/devices/{device.id}")


@router.post("/devices/{device_id}/disable", response_model=None)
async def device_disable(
    device_id: uuid.UUID, console: ConsoleOperator, store: StoreDep, session: SessionDep
) -> Response:
    device = await device_service.get_any_device(session, device_id)
    await device_service.set_device_disabled(session, console.principal, device, True)
    await flash(store, console, "ok", "Device disabled: its fixes are rejected.")
    return see_other(f"/admin/devices/{device.id}")


@router.post("/devices/{device_id}/enable", response_model=None)
async def device_enable(
    device_id: uuid.UUID, console: ConsoleOperator, store: StoreDep, session: SessionDep
) -> Response:
    device = await device_service.get_any_device(session, device_id)
    await device_service.set_device_disabled(session, console.principal, device, False)
    await flash(store, console, "ok", "Device enabled.")
    return see_other(f"/admin/devices/{device.id}")


@router.post("/devices/{device_id}/edit", response_model=None)
@shown_on("edit-device", device_again)
async def device_edit(
    device_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    name: Annotated[str, Form()],
    plate: Annotated[str, Form()] = "",
    speed_limit_kmh: Annotated[str, Form()] = "",
) -> Response:
    device = await device_service.get_any_device(session, device_id)
    # Every field is sent: an emptied plate or speed limit clears it.
    sent = {"name": name, "plate": plate.strip(), "speed_limit_kmh": speed_limit_kmh.strip()}
    try:
        data = DeviceUpdate.model_validate({k: v or None for k, v in sent.items()})
    except ValidationError as exc:
        raise invalid(exc) from None
    await device_service.update_device_for_operator(session, console.principal, device, data)
    await flash(store, console, "ok", "Device saved.")
    return see_other(f"/admin/devices/{device.id}")


@router.post("/devices/{device_id}/delete", response_model=None)
@shown_on("delete-device", device_again, fields={DeviceDeletionNotConfirmed: "confirm"})
async def device_delete(
    device_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    confirm: Annotated[str, Form()] = "",
) -> Response:
    device = await device_service.get_any_device(session, device_id)
    unique_id, org_id = device.unique_id, device.org_id
    await device_tenure.delete_device(session, console.principal, device, confirm=confirm.strip())
    await flash(store, console, "ok", f"Device {unique_id} and its history were deleted.")
    return see_other(f"/admin/organizations/{org_id}")
