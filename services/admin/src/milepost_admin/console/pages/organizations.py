"""Organizations: list, create, a tenant's page, settings, suspend, export, delete."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_admin.console.deps import Console, ConsoleDep, ConsoleOperator, StoreDep
from milepost_admin.console.render import flash, page, see_other
from milepost_admin.console.routing import ConsoleRoute, FormState, shown_on
from milepost_admin.console.sessions import SessionStore
from milepost_admin.console.views import again, filters_of, form_model
from milepost_admin.deps import ContextDep
from milepost_admin.exports import export_download
from milepost_common.domain.api_keys import service as api_key_service
from milepost_common.domain.api_keys.models import Scope
from milepost_common.domain.api_keys.schemas import ApiKeyFilters, ApiKeySort
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.devices import state as device_state
from milepost_common.domain.devices.schemas import DeviceFilters, DeviceSort
from milepost_common.domain.ingest_batches import operators as batch_operators
from milepost_common.domain.ingest_batches.schemas import BatchFilters, BatchSort
from milepost_common.domain.organizations import export as org_export
from milepost_common.domain.organizations import service as org_service
from milepost_common.domain.organizations.errors import DeletionNotConfirmed
from milepost_common.domain.organizations.schemas import (
    ExportFormat,
    ExportKind,
    OrganizationCreate,
    OrganizationFilters,
    OrganizationUpdate,
)
from milepost_common.domain.users import service as user_service
from milepost_common.domain.users.models import OrgRole
from milepost_common.domain.users.schemas import UserFilters, UserListSort
from milepost_common.domain.webhooks import service as webhook_service
from milepost_common.domain.webhooks.schemas import DeliveryFilters, DeliverySort
from milepost_common.errors import ValidationFailed
from milepost_common.web.deps import DatabaseDep, SessionDep

router = APIRouter(route_class=ConsoleRoute)


async def _organizations(
    request: Request,
    console: Console,
    store: SessionStore,
    session: AsyncSession,
    form: FormState | None = None,
) -> HTMLResponse:
    filters = await filters_of(
        request, store, console, OrganizationFilters, default_sort="-created_at"
    )
    result = await org_service.list_organizations(session, filters)
    return await page(
        request,
        store,
        console,
        "organizations.html",
        {"section": "organizations", "page": result, "filters": filters, "form": form},
    )


async def organizations_again(request: Request, form: FormState) -> HTMLResponse:
    """The list with the new-organization form open, its values and errors."""
    async with again(request) as (session, console, store):
        return await _organizations(request, console, store, session, form)


@router.get("/organizations", response_class=HTMLResponse)
async def organizations_page(
    request: Request, console: ConsoleDep, store: StoreDep, session: SessionDep
) -> HTMLResponse:
    return await _organizations(request, console, store, session)


@router.post("/organizations", response_model=None)
@shown_on("new-organization", organizations_again)
async def organization_create(
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    name: Annotated[str, Form()],
    timezone: Annotated[str, Form()] = "UTC",
) -> Response:
    data = form_model(OrganizationCreate, {"name": name, "timezone": timezone})
    org = await org_service.create_organization(session, console.principal, data)
    await flash(store, console, "ok", f"Organization “{org.name}” created.")
    return see_other(f"/admin/organizations/{org.id}")


async def _organization(
    request: Request,
    org_id: uuid.UUID,
    console: Console,
    store: SessionStore,
    session: AsyncSession,
    form: FormState | None = None,
) -> HTMLResponse:
    org = await org_service.get_organization(session, org_id)
    users = await user_service.list_users(
        session, UserFilters(org_id=org.id, limit=10, sort=UserListSort.CREATED_AT_DESC)
    )
    devices = await device_service.list_devices(
        session, DeviceFilters(org_id=org.id, limit=10, sort=DeviceSort.CREATED_AT_DESC)
    )
    keys = await api_key_service.list_api_keys_page(
        session, ApiKeyFilters(org_id=org.id, limit=10, sort=ApiKeySort.CREATED_AT_DESC)
    )
    batches = await batch_operators.list_batches(
        session, BatchFilters(org_id=org.id, limit=5, sort=BatchSort.RECEIVED_AT_DESC)
    )
    return await page(
        request,
        store,
        console,
        "organization.html",
        {
            "section": "organizations",
            "org": org,
            "users": users,
            "devices": devices,
            "keys": keys,
            "batches": batches,
            "seen": await device_state.last_seen(session, [d.id for d in devices.items]),
            "webhooks": await webhook_service.list_org_endpoints(session, org.id),
            "deliveries": await webhook_service.list_deliveries(
                session,
                DeliveryFilters(org_id=org.id, limit=10, sort=DeliverySort.CREATED_AT_DESC),
            ),
            "device_count": await device_service.count_devices(session, org.id),
            "user_count": await user_service.count_users(session, org.id),
            "roles": list(OrgRole),
            "scopes": list(Scope),
            "export_kinds": list(ExportKind),
            "form": form,
        },
    )


async def organization_again(request: Request, form: FormState) -> HTMLResponse:
    """The organization's page with one of its forms' values and errors."""
    async with again(request) as (session, console, store):
        org_id = uuid.UUID(str(request.path_params["org_id"]))
        return await _organization(request, org_id, console, store, session, form)


@router.get("/organizations/{org_id}", response_class=HTMLResponse)
async def organization_page(
    request: Request,
    org_id: uuid.UUID,
    console: ConsoleDep,
    store: StoreDep,
    session: SessionDep,
) -> HTMLResponse:
    return await _organization(request, org_id, console, store, session)


@router.post("/organizations/{org_id}/settings", response_model=None)
@shown_on("settings", organization_again)
async def organization_settings(
    request: Request,
    org_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
) -> Response:
    form = await request.form()
    fields = OrganizationUpdate.model_fields
    sent = {k: v for k, v in form.items() if k in fields}
    data = form_model(OrganizationUpdate, sent)
    for name in ("default_speed_limit_kmh", "max_devices", "ingest_rate_limit", "api_rate_limit"):
        if name in sent and sent[name] == "":
            setattr(data, name, None)
    org = await org_service.get_organization(session, org_id, for_update=True)
    await org_service.update_organization(session, console.principal, org, data)
    await flash(store, console, "ok", "Settings saved.")
    return see_other(f"/admin/organizations/{org.id}")


@router.post("/organizations/{org_id}/suspend", response_model=None)
async def organization_suspend(
    org_id: uuid.UUID, console: ConsoleOperator, store: StoreDep, session: SessionDep
) -> Response:
    org = await org_service.get_organization(session, org_id, for_update=True)
    await org_service.suspend_organization(session, console.principal, org)
    await flash(store, console, "ok", f"“{org.name}” is suspended: its keys and users stop now.")
    return see_other(f"/admin/organizations/{org.id}")


@router.post("/organizations/{org_id}/reactivate", response_model=None)
async def organization_reactivate(
    org_id: uuid.UUID, console: ConsoleOperator, store: StoreDep, session: SessionDep
) -> Response:
    org = await org_service.get_organization(session, org_id, for_update=True)
    await org_service.reactivate_organization(session, console.principal, org)
    await flash(store, console, "ok", f"“{org.name}” is active again.")
    return see_other(f"/admin/organizations/{org.id}")


@router.post("/organizations/{org_id}/export", response_model=None)
@shown_on("export", organization_again)
async def organization_export(
    org_id: uuid.UUID,
    console: ConsoleOperator,
    session: SessionDep,
    db: DatabaseDep,
    ctx: ContextDep,
    fmt: Annotated[ExportFormat, Form(alias="format")] = ExportFormat.NDJSON,
    kind: Annotated[ExportKind | Literal[""], Form()] = "",  # "": every kind
) -> Response:
    org = await org_service.get_organization(session, org_id)
    chosen = kind or None
    if fmt is ExportFormat.CSV and chosen is None:
        raise ValidationFailed(
            "A CSV export needs a kind of data.",
            details=[{"loc": ["kind"], "msg": "Choose a kind for CSV.", "type": "value_error"}],
        )
    kinds = [chosen] if chosen else list(ExportKind)
    await org_export.record_export(session, console.principal, org, fmt, kinds)
    return export_download(ctx, db, org.id, fmt, kinds)


@router.post("/organizations/{org_id}/delete", response_model=None)
@shown_on("delete", organization_again, fields={DeletionNotConfirmed: "confirm"})
async def organization_delete(
    org_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    confirm: Annotated[str, Form()] = "",
) -> Response:
    org = await org_service.get_organization(session, org_id, for_update=True)
    name = org.name
    await org_service.delete_organization(session, console.principal, org, confirm)
    await flash(store, console, "ok", f"“{name}” and all its data were deleted.")
    return see_other("/admin/organizations")
