"""Console pages: lists with search, filters and pages; details; the operator's actions.

Every change goes through the same domain services as the JSON API (so audit, hashing and
side effects are never bypassed), behind the session's CSRF token and the role check.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, BackgroundTasks, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from milepost_admin import enqueue
from milepost_admin.console.charts import Series, line_chart
from milepost_admin.console.deps import (
    Console,
    ConsoleDep,
    ConsoleOperator,
    ConsoleSuperadmin,
    StoreDep,
    parse_uuid,
)
from milepost_admin.console.render import flash, org_names, page, see_other
from milepost_admin.deps import ServicesDep
from milepost_admin.exports import stream_export
from milepost_admin.links import invite_url, reset_url
from milepost_common.domain import paging
from milepost_common.domain.api_keys import service as api_key_service
from milepost_common.domain.api_keys.models import Scope
from milepost_common.domain.api_keys.schemas import ApiKeyCreate, ApiKeyFilters
from milepost_common.domain.audit import service as audit
from milepost_common.domain.audit.schemas import AuditFilters, AuditSort
from milepost_common.domain.devices import admin_service as device_admin
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.devices.admin_schemas import DeviceFilters
from milepost_common.domain.devices.models import Device
from milepost_common.domain.devices.schemas import VehicleCreate
from milepost_common.domain.ingest_batches import queries as batch_queries
from milepost_common.domain.ingest_batches import service as ingest_service
from milepost_common.domain.ingest_batches.admin_schemas import BatchFilters, BatchSort
from milepost_common.domain.organizations import export as org_export
from milepost_common.domain.organizations import service as org_service
from milepost_common.domain.organizations.schemas import (
    ExportFormat,
    ExportKind,
    OrganizationCreate,
    OrganizationFilters,
    OrganizationUpdate,
)
from milepost_common.domain.system import service as system_service
from milepost_common.domain.users import service as user_service
from milepost_common.domain.users.models import OrgRole, PlatformRole, User
from milepost_common.domain.users.schemas import (
    OperatorCreate,
    OperatorFilters,
    UserCreate,
    UserFilters,
)
from milepost_common.domain.webhooks import admin_service as webhook_admin
from milepost_common.domain.webhooks.admin_schemas import DeliveryFilters
from milepost_common.errors import ValidationFailed
from milepost_common.web.deps import DatabaseDep, PublisherDep, SessionDep

router = APIRouter(tags=["console"], include_in_schema=False)
FiltersT = TypeVar("FiltersT", bound=BaseModel)
PAGE_SIZE = 25


def _problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def invalid(exc: ValidationError) -> ValidationFailed:
    """A form's validation error, in the words the form's page shows."""
    return ValidationFailed(_problem(exc))


async def list_page(
    request: Request,
    store: StoreDep,
    console: Console,
    session: AsyncSession,
    section: str,
    filters: Any,
    result: paging.PageResult[Any],
    **extra: Any,
) -> HTMLResponse:
    """A filtered list (template ``<section>.html``) with its items' organization names."""
    return await page(
        request,
        store,
        console,
        f"{section}.html",
        {
            "section": section,
            "page": result,
            "filters": filters,
            "names": await org_names(session, (item.org_id for item in result.items)),
            **extra,
        },
    )


async def filters_of(
    request: Request,
    store: StoreDep,
    console: Console,
    model: type[FiltersT],
    *,
    default_sort: str | None = None,
    **fixed: Any,
) -> FiltersT:
    """The page's filters from the query string (sorted by ``default_sort`` unless the user
    chose); bad values are dropped with a notice."""
    defaults = {"limit": str(PAGE_SIZE), **({"sort": default_sort} if default_sort else {})}
    raw = {**defaults, **{k: v for k, v in request.query_params.items() if v != ""}}
    try:
        return model.model_validate({**raw, **fixed})
    except ValidationError as exc:
        await flash(store, console, "error", f"Filter ignored — {_problem(exc)}")
        return model.model_validate({**defaults, **fixed})


def form_model(model: type[FiltersT], data: dict[str, Any]) -> FiltersT:
    """A form's fields as the domain's request model; raises ValidationFailed (422)."""
    try:
        return model.model_validate({k: v for k, v in data.items() if v not in ("", None)})
    except ValidationError as exc:
        raise invalid(exc) from None


# Dashboard ----------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
async def dashboard(
    request: Request,
    console: ConsoleDep,
    store: StoreDep,
    session: SessionDep,
    services: ServicesDep,
) -> HTMLResponse:
    status = await system_service.get_system_status(session, services.broker)
    series = await system_service.ingest_series(session)
    times = [p.minute for p in series]
    charts = {
        "rate": line_chart(
            "Positions accepted per minute, last hour",
            times,
            Series("Ingest rate", "positions/min", "#1f5fbf", [p.positions for p in series]),
        ),
        "lag": line_chart(
            "Mean processing time of batches per minute, last hour",
            times,
            Series("Processing lag", "s", "#b35c00", [p.lag_s for p in series]),
        ),
    }
    return await page(
        request,
        store,
        console,
        "dashboard.html",
        {"section": "dashboard", "status": status, "charts": charts},
    )


# Organizations ------------------------------------------------------------------------


@router.get("/organizations", response_class=HTMLResponse)
async def organizations_page(
    request: Request, console: ConsoleDep, store: StoreDep, session: SessionDep
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
        {"section": "organizations", "page": result, "filters": filters},
    )


@router.post("/organizations", response_model=None)
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


async def _count(session: SessionDep, model: Any, org_id: uuid.UUID) -> int:
    query = select(func.count()).select_from(model).where(model.org_id == org_id)
    return int(await session.scalar(query) or 0)


@router.get("/organizations/{org_id}", response_class=HTMLResponse)
async def organization_page(
    request: Request,
    org_id: uuid.UUID,
    console: ConsoleDep,
    store: StoreDep,
    session: SessionDep,
) -> HTMLResponse:
    org = await org_service.get_organization(session, org_id)
    users = await user_service.list_users(session, UserFilters(org_id=org.id, limit=10))
    devices = await device_admin.list_devices(session, DeviceFilters(org_id=org.id, limit=10))
    keys = await api_key_service.list_api_keys_page(session, ApiKeyFilters(org_id=org.id, limit=10))
    batches = await batch_queries.list_batches(
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
            "device_count": await _count(session, Device, org.id),
            "user_count": await _count(session, User, org.id),
            "roles": list(OrgRole),
            "scopes": list(Scope),
            "export_kinds": list(ExportKind),
        },
    )


@router.post("/organizations/{org_id}/settings", response_model=None)
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
async def organization_export(
    org_id: uuid.UUID,
    console: ConsoleOperator,
    session: SessionDep,
    db: DatabaseDep,
    fmt: Annotated[ExportFormat, Form(alias="format")] = ExportFormat.NDJSON,
    kind: Annotated[str, Form()] = "",
) -> Response:
    org = await org_service.get_organization(session, org_id)
    chosen = ExportKind(kind) if kind else None
    if fmt is ExportFormat.CSV and chosen is None:
        raise ValidationFailed("A CSV export needs a kind of data.")
    kinds = [chosen] if chosen else list(ExportKind)
    await org_export.record_export(session, console.principal, org, fmt, kinds)
    name = f"milepost-{org.id}-{chosen.value if chosen else 'all'}.{fmt.value}"
    return StreamingResponse(
        stream_export(db, org.id, fmt, kinds),
        media_type="application/x-ndjson" if fmt is ExportFormat.NDJSON else "text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/organizations/{org_id}/delete", response_model=None)
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


# Users --------------------------------------------------------------------------------


@router.get("/users", response_class=HTMLResponse)
async def users_page(
    request: Request, console: ConsoleDep, store: StoreDep, session: SessionDep
) -> HTMLResponse:
    filters = await filters_of(request, store, console, UserFilters)
    result = await user_service.list_users(session, filters)
    return await list_page(
        request, store, console, session, "users", filters, result, roles=list(OrgRole)
    )


@router.post("/organizations/{org_id}/users", response_model=None)
async def user_create(
    request: Request,
    org_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    services: ServicesDep,
    email: Annotated[str, Form()],
    role: Annotated[str, Form()],
    password: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
) -> Response:
    org = await org_service.get_organization(session, org_id)
    data = form_model(
        UserCreate, {"email": email, "role": role, "password": password, "name": name}
    )
    created = await user_service.create_user(
        session, console.principal, org.id, data, hasher=services.hasher
    )
    if created.invitation_token is None:
        await flash(store, console, "ok", f"User {created.user.email} created.")
        return see_other(f"/admin/users/{created.user.id}")
    return await page(
        request,
        store,
        console,
        "secret.html",
        {
            "section": "users",
            "title": f"Invitation for {created.user.email}",
            "secret": invite_url(services.settings, created.invitation_token),
            "explain": "Send this link to the person: it lets them choose a password, once, "
            "within 48 hours. It is shown only now.",
            "back": f"/admin/users/{created.user.id}",
        },
    )


@router.get("/users/{user_id}", response_class=HTMLResponse)
async def user_page(
    request: Request,
    user_id: uuid.UUID,
    console: ConsoleDep,
    store: StoreDep,
    session: SessionDep,
) -> HTMLResponse:
    target = await user_service.get_user(session, user_id)
    history = await audit.list_audit_entries(
        session, AuditFilters(target_id=str(target.id), limit=20, sort=AuditSort.OCCURRED_AT_DESC)
    )
    return await page(
        request,
        store,
        console,
        "user.html",
        {
            "section": "users",
            "target": target,
            "org": await org_service.get_organization(session, target.org_id)
            if target.org_id
            else None,
            "roles": list(OrgRole),
            "history": history,
        },
    )


@router.post("/users/{user_id}/role", response_model=None)
async def user_role(
    user_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    role: Annotated[OrgRole, Form()],
) -> Response:
    target = await user_service.get_user(session, user_id)
    await user_service.change_user_role(session, console.principal, target, role)
    await flash(store, console, "ok", f"{target.email} is now {role.value}.")
    return see_other(f"/admin/users/{target.id}")


@router.post("/users/{user_id}/deactivate", response_model=None)
async def user_deactivate(
    user_id: uuid.UUID, console: ConsoleOperator, store: StoreDep, session: SessionDep
) -> Response:
    target = await user_service.get_user(session, user_id)
    await user_service.deactivate_user(session, console.principal, target)
    await flash(store, console, "ok", f"{target.email} is deactivated; their sessions ended.")
    return see_other(f"/admin/users/{target.id}")


@router.post("/users/{user_id}/reactivate", response_model=None)
async def user_reactivate(
    user_id: uuid.UUID, console: ConsoleOperator, store: StoreDep, session: SessionDep
) -> Response:
    target = await user_service.get_user(session, user_id)
    await user_service.reactivate_user(session, console.principal, target)
    await flash(store, console, "ok", f"{target.email} is active again.")
    return see_other(f"/admin/users/{target.id}")


@router.post("/users/{user_id}/reset-password", response_model=None)
async def user_reset_password(
    request: Request,
    user_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    services: ServicesDep,
) -> Response:
    target = await user_service.get_user(session, user_id)
    raw = await user_service.reset_user_password(session, console.principal, target)
    return await page(
        request,
        store,
        console,
        "secret.html",
        {
            "section": "users",
            "title": f"Password reset for {target.email}",
            "secret": reset_url(services.settings, raw),
            "explain": "Send this link to the person: it works once, within 48 hours. "
            "It is shown only now.",
            "back": f"/admin/users/{target.id}",
        },
    )


# Devices ------------------------------------------------------------------------------


@router.get("/devices", response_class=HTMLResponse)
async def devices_page(
    request: Request, console: ConsoleDep, store: StoreDep, session: SessionDep
) -> HTMLResponse:
    filters = await filters_of(request, store, console, DeviceFilters)
    result = await device_admin.list_devices(session, filters)
    return await list_page(request, store, console, session, "devices", filters, result)


@router.post("/organizations/{org_id}/devices", response_model=None)
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


@router.post("/organizations/{org_id}/devices/import", response_class=HTMLResponse)
async def device_import(
    request: Request,
    org_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    csv_file: Annotated[UploadFile, File()],
) -> HTMLResponse:
    org = await org_service.get_organization(session, org_id)
    raw = await csv_file.read(2_000_001)
    if len(raw) > 2_000_000:
        raise ValidationFailed("The file is larger than 2 MB.")
    report = await device_admin.import_devices(
        session, console.principal, org, raw.decode("utf-8", errors="replace")
    )
    return await page(
        request,
        store,
        console,
        "import_report.html",
        {"section": "devices", "org": org, "report": report},
    )


@router.get("/devices/{device_id}", response_class=HTMLResponse)
async def device_page(
    request: Request,
    device_id: uuid.UUID,
    console: ConsoleDep,
    store: StoreDep,
    session: SessionDep,
) -> HTMLResponse:
    device = await device_admin.get_any_device(session, device_id)
    history = await audit.list_audit_entries(
        session, AuditFilters(target_id=str(device.id), limit=20, sort=AuditSort.OCCURRED_AT_DESC)
    )
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
        },
    )


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
    device = await device_admin.get_any_device(session, device_id)
    target = await org_service.get_organization(session, target_id)
    await device_admin.transfer_device(session, console.principal, device, target)
    await flash(store, console, "ok", f"Device transferred to “{target.name}” (future data).")
    return see_other(f"/admin/devices/{device.id}")


@router.post("/devices/{device_id}/disable", response_model=None)
async def device_disable(
    device_id: uuid.UUID, console: ConsoleOperator, store: StoreDep, session: SessionDep
) -> Response:
    device = await device_admin.get_any_device(session, device_id)
    await device_admin.set_device_disabled(session, console.principal, device, True)
    await flash(store, console, "ok", "Device disabled: its fixes are rejected.")
    return see_other(f"/admin/devices/{device.id}")


@router.post("/devices/{device_id}/enable", response_model=None)
async def device_enable(
    device_id: uuid.UUID, console: ConsoleOperator, store: StoreDep, session: SessionDep
) -> Response:
    device = await device_admin.get_any_device(session, device_id)
    await device_admin.set_device_disabled(session, console.principal, device, False)
    await flash(store, console, "ok", "Device enabled.")
    return see_other(f"/admin/devices/{device.id}")


# API keys -----------------------------------------------------------------------------


@router.get("/api-keys", response_class=HTMLResponse)
async def api_keys_page(
    request: Request, console: ConsoleDep, store: StoreDep, session: SessionDep
) -> HTMLResponse:
    filters = await filters_of(request, store, console, ApiKeyFilters)
    result = await api_key_service.list_api_keys_page(session, filters)
    return await list_page(request, store, console, session, "api_keys", filters, result)


async def _secret_page(
    request: Request, store: StoreDep, console: Console, issued: api_key_service.IssuedKey
) -> HTMLResponse:
    return await page(
        request,
        store,
        console,
        "secret.html",
        {
            "section": "api_keys",
            "title": f"API key “{issued.api_key.name}” ({issued.api_key.prefix}…)",
            "secret": issued.secret,
            "explain": "Copy the key now and hand it to the upstream system: it is shown "
            "only once and cannot be recovered (only its hash is stored).",
            "back": f"/admin/api-keys/{issued.api_key.id}",
        },
    )


@router.post("/organizations/{org_id}/api-keys", response_class=HTMLResponse)
async def api_key_issue(
    request: Request,
    org_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    services: ServicesDep,
    name: Annotated[str, Form()],
    scopes: Annotated[list[str] | None, Form()] = None,
) -> HTMLResponse:
    org = await org_service.get_organization(session, org_id)
    data = form_model(ApiKeyCreate, {"name": name, "scopes": scopes or None})
    issued = await api_key_service.issue_api_key(
        session,
        console.principal,
        org.id,
        data.name,
        scopes=data.scopes,
        pepper=services.settings.auth.api_key_pepper.get_secret_value(),
    )
    return await _secret_page(request, store, console, issued)


@router.get("/api-keys/{key_id}", response_class=HTMLResponse)
async def api_key_page(
    request: Request,
    key_id: uuid.UUID,
    console: ConsoleDep,
    store: StoreDep,
    session: SessionDep,
) -> HTMLResponse:
    api_key = await api_key_service.get_api_key(session, key_id)
    history = await audit.list_audit_entries(
        session, AuditFilters(target_id=str(api_key.id), limit=20, sort=AuditSort.OCCURRED_AT_DESC)
    )
    return await page(
        request,
        store,
        console,
        "api_key.html",
        {
            "section": "api_keys",
            "key": api_key,
            "org": await org_service.get_organization(session, api_key.org_id),
            "history": history,
        },
    )


@router.post("/api-keys/{key_id}/revoke", response_model=None)
async def api_key_revoke(
    key_id: uuid.UUID, console: ConsoleOperator, store: StoreDep, session: SessionDep
) -> Response:
    api_key = await api_key_service.get_api_key(session, key_id)
    await api_key_service.revoke_api_key(session, console.principal, api_key)
    await flash(store, console, "ok", f"Key {api_key.prefix}… revoked: refused from now on.")
    return see_other(f"/admin/api-keys/{api_key.id}")


@router.post("/api-keys/{key_id}/rotate", response_class=HTMLResponse)
async def api_key_rotate(
    request: Request,
    key_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    services: ServicesDep,
) -> HTMLResponse:
    api_key = await api_key_service.get_api_key(session, key_id)
    issued = await api_key_service.rotate_api_key(
        session,
        console.principal,
        api_key,
        pepper=services.settings.auth.api_key_pepper.get_secret_value(),
    )
    return await _secret_page(request, store, console, issued)


# Ingest batches -----------------------------------------------------------------------


@router.get("/ingest-batches", response_class=HTMLResponse)
async def batches_page(
    request: Request, console: ConsoleDep, store: StoreDep, session: SessionDep
) -> HTMLResponse:
    filters = await filters_of(request, store, console, BatchFilters, default_sort="-received_at")
    result = await batch_queries.list_batches(session, filters)
    return await list_page(request, store, console, session, "batches", filters, result)


@router.get("/ingest-batches/{batch_id}", response_class=HTMLResponse)
async def batch_page(
    request: Request,
    batch_id: uuid.UUID,
    console: ConsoleDep,
    store: StoreDep,
    session: SessionDep,
) -> HTMLResponse:
    batch = await batch_queries.get_batch(session, batch_id)
    return await page(
        request,
        store,
        console,
        "batch.html",
        {
            "section": "batches",
            "batch": batch,
            "org": await org_service.get_organization(session, batch.org_id),
        },
    )


@router.post("/ingest-batches/{batch_id}/replay", response_model=None)
async def batch_replay(
    batch_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    db: DatabaseDep,
    publisher: PublisherDep,
    background: BackgroundTasks,
) -> Response:
    batch = await batch_queries.get_batch(session, batch_id)
    before = batch.rejected
    replayed = await ingest_service.replay_batch(session, console.principal, batch)
    background.add_task(enqueue.process_batches, db, publisher, [replayed.id])
    await flash(
        store,
        console,
        "ok",
        f"Batch replayed: {before - replayed.rejected} item(s) stored now, "
        f"{replayed.rejected} still rejected; processing again.",
    )
    return see_other(f"/admin/ingest-batches/{replayed.id}")


@router.post("/organizations/{org_id}/replay-failed", response_model=None)
async def batches_replay_failed(
    org_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    db: DatabaseDep,
    publisher: PublisherDep,
    background: BackgroundTasks,
) -> Response:
    org = await org_service.get_organization(session, org_id)
    replayed = [
        await ingest_service.replay_batch(session, console.principal, batch)
        for batch in await batch_queries.failed_batches(session, org.id)
    ]
    background.add_task(enqueue.process_batches, db, publisher, [b.id for b in replayed])
    await flash(store, console, "ok", f"{len(replayed)} failed batch(es) replayed.")
    return see_other(f"/admin/ingest-batches?org_id={org.id}")


# Webhook deliveries -------------------------------------------------------------------


@router.get("/webhook-deliveries", response_class=HTMLResponse)
async def deliveries_page(
    request: Request, console: ConsoleDep, store: StoreDep, session: SessionDep
) -> HTMLResponse:
    filters = await filters_of(request, store, console, DeliveryFilters, default_sort="-created_at")
    result = await webhook_admin.list_deliveries(session, filters)
    return await list_page(request, store, console, session, "deliveries", filters, result)


@router.get("/webhook-deliveries/{delivery_id}", response_class=HTMLResponse)
async def delivery_page(
    request: Request,
    delivery_id: uuid.UUID,
    console: ConsoleDep,
    store: StoreDep,
    session: SessionDep,
) -> HTMLResponse:
    delivery = await webhook_admin.get_delivery(session, delivery_id)
    return await page(
        request, store, console, "delivery.html", {"section": "deliveries", "delivery": delivery}
    )


@router.post("/webhook-deliveries/{delivery_id}/retry", response_model=None)
async def delivery_retry(
    delivery_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    publisher: PublisherDep,
    background: BackgroundTasks,
) -> Response:
    delivery = await webhook_admin.get_delivery(session, delivery_id, for_update=True)
    await webhook_admin.retry_delivery(session, console.principal, delivery)
    background.add_task(enqueue.deliver_webhook, publisher, delivery.id)
    await flash(store, console, "ok", "Delivery queued again.")
    return see_other(f"/admin/webhook-deliveries/{delivery.id}")


# Audit log ----------------------------------------------------------------------------


@router.get("/audit-log", response_class=HTMLResponse)
async def audit_page(
    request: Request, console: ConsoleDep, store: StoreDep, session: SessionDep
) -> HTMLResponse:
    filters = await filters_of(request, store, console, AuditFilters, default_sort="-occurred_at")
    result = await audit.list_audit_entries(session, filters)
    return await list_page(request, store, console, session, "audit", filters, result)


# Operators ----------------------------------------------------------------------------


@router.get("/operators", response_class=HTMLResponse)
async def operators_page(
    request: Request, console: ConsoleDep, store: StoreDep, session: SessionDep
) -> HTMLResponse:
    filters = await filters_of(request, store, console, OperatorFilters)
    result = await user_service.list_operators(session, filters)
    return await page(
        request,
        store,
        console,
        "operators.html",
        {
            "section": "operators",
            "page": result,
            "filters": filters,
            "platform_roles": list(PlatformRole),
        },
    )


@router.post("/operators", response_model=None)
async def operator_create(
    request: Request,
    console: ConsoleSuperadmin,
    store: StoreDep,
    session: SessionDep,
    services: ServicesDep,
    email: Annotated[str, Form()],
    role: Annotated[str, Form()],
) -> Response:
    data = form_model(OperatorCreate, {"email": email, "role": role})
    created = await user_service.create_operator_account(
        session, console.principal, data, hasher=services.hasher
    )
    if created.invitation_token is None:
        return see_other("/admin/operators")
    return await page(
        request,
        store,
        console,
        "secret.html",
        {
            "section": "operators",
            "title": f"Invitation for operator {created.user.email}",
            "secret": invite_url(services.settings, created.invitation_token),
            "explain": "Send this link to the new operator: it works once, within 48 hours. "
            "It is shown only now.",
            "back": "/admin/operators",
        },
    )


@router.post("/operators/{operator_id}/{action}", response_model=None)
async def operator_action(
    operator_id: uuid.UUID,
    action: str,
    console: ConsoleSuperadmin,
    store: StoreDep,
    session: SessionDep,
    role: Annotated[str, Form()] = "",
) -> Response:
    operator = await user_service.get_operator(session, operator_id)
    if action == "role":
        try:
            new_role = PlatformRole(role)
        except ValueError:
            raise ValidationFailed("Unknown role.") from None
        await user_service.change_operator_role(session, console.principal, operator, new_role)
    elif action == "deactivate":
        await user_service.deactivate_operator(session, console.principal, operator)
    elif action == "reactivate":
        await user_service.reactivate_operator(session, console.principal, operator)
    else:
        raise ValidationFailed("Unknown action.")
    await flash(store, console, "ok", f"Operator {operator.email} updated.")
    return see_other("/admin/operators")
