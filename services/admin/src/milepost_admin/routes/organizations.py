"""Organizations: onboard, change settings, suspend and reactivate, export, delete."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from milepost_admin.deps import AUTH_ERRORS, ContextDep, OperatorUser, SupportUser
from milepost_admin.exports import export_download
from milepost_common.domain.organizations import export as org_export
from milepost_common.domain.organizations import service as org_service
from milepost_common.domain.organizations.errors import (
    DeletionNotConfirmed,
    DevicesHoldOtherHistory,
    OrganizationNotFound,
    OrganizationNotSuspended,
)
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.organizations.schemas import (
    ExportFormat,
    ExportKind,
    OrganizationCreate,
    OrganizationFilters,
    OrganizationRead,
    OrganizationUpdate,
)
from milepost_common.errors import ValidationFailed
from milepost_common.pagination import Page
from milepost_common.web.deps import DatabaseDep, SessionDep
from milepost_common.web.errors import error_responses

router = APIRouter(prefix="/v1/organizations", tags=["organizations"])


async def load_organization(org_id: uuid.UUID, session: SessionDep) -> Organization:
    return await org_service.get_organization(session, org_id, for_update=True)


OrganizationDep = Annotated[Organization, Depends(load_organization)]


def read(org: Organization) -> OrganizationRead:
    return OrganizationRead.model_validate(org)


@router.post(
    "",
    status_code=201,
    summary="Create an organization",
    responses=error_responses(*AUTH_ERRORS, ValidationFailed),
)
async def create_organization(
    user: OperatorUser, body: OrganizationCreate, session: SessionDep
) -> OrganizationRead:
    return read(await org_service.create_organization(session, user, body))


@router.get("", summary="List organizations", responses=error_responses(*AUTH_ERRORS))
async def list_organizations(
    _user: SupportUser, filters: Annotated[OrganizationFilters, Query()], session: SessionDep
) -> Page[OrganizationRead]:
    page = await org_service.list_organizations(session, filters)
    return Page(items=[read(o) for o in page.items], next_cursor=page.next_cursor)


@router.get(
    "/{org_id}",
    summary="Read an organization",
    responses=error_responses(*AUTH_ERRORS, OrganizationNotFound),
)
async def get_organization(_user: SupportUser, org: OrganizationDep) -> OrganizationRead:
    return read(org)


@router.patch(
    "/{org_id}",
    summary="Change an organization's settings",
    responses=error_responses(*AUTH_ERRORS, OrganizationNotFound, ValidationFailed),
)
async def update_organization(
    user: OperatorUser, org: OrganizationDep, body: OrganizationUpdate, session: SessionDep
) -> OrganizationRead:
    return read(await org_service.update_organization(session, user, org, body))


@router.post(
    "/{org_id}/suspend",
    summary="Suspend an organization (idempotent)",
    description="Its users, API tokens and API keys are refused from the next request on "
    "and its refresh tokens are revoked.",
    responses=error_responses(*AUTH_ERRORS, OrganizationNotFound),
)
async def suspend_organization(
    user: OperatorUser, org: OrganizationDep, session: SessionDep
) -> OrganizationRead:
    return read(await org_service.suspend_organization(session, user, org))


@router.post(
    "/{org_id}/reactivate",
    summary="Lift a suspension (idempotent)",
    responses=error_responses(*AUTH_ERRORS, OrganizationNotFound),
)
async def reactivate_organization(
    user: OperatorUser, org: OrganizationDep, session: SessionDep
) -> OrganizationRead:
    return read(await org_service.reactivate_organization(session, user, org))


@router.delete(
    "/{org_id}",
    status_code=204,
    summary="Delete a suspended organization and all its data",
    description="`confirm` must be the organization's exact name. Irreversible; the audit "
    "log keeps the record. Refused (409, the devices in `details`) while a device transferred "
    "in still holds another organization's history: transfer it out first.",
    responses=error_responses(
        *AUTH_ERRORS,
        OrganizationNotFound,
        OrganizationNotSuspended,
        DeletionNotConfirmed,
        DevicesHoldOtherHistory,
    ),
)
async def delete_organization(
    user: OperatorUser,
    org: OrganizationDep,
    confirm: Annotated[str, Query(description="The organization's exact name.")],
    session: SessionDep,
) -> None:
    await org_service.delete_organization(session, user, org, confirm)


@router.post(
    "/{org_id}/export",
    summary="Export an organization's data (streamed NDJSON or CSV)",
    description="NDJSON: one `{type, data}` line per row of every kind (or of `kind`). "
    "CSV: one kind per file, `kind` required. Secrets are never exported. Audited. "
    "Positions, trips, stops and alerts show their numbers as the public API does (metres "
    "and km/h rounded to 0.1, durations to whole seconds) and carry `vehicle_name` after "
    "`device_id` (null for rows of an earlier tenure). A server streams a few exports at "
    "once: past them it answers 503 `unavailable` with `Retry-After`, and an export whose "
    "client takes no chunk for a while (30 s by default) is cut off.",
    responses={
        200: {"content": {"application/x-ndjson": {}, "text/csv": {}}},
        **error_responses(*AUTH_ERRORS, OrganizationNotFound, ValidationFailed),
    },
)
async def export_organization(
    user: OperatorUser,
    org: OrganizationDep,
    session: SessionDep,
    db: DatabaseDep,
    ctx: ContextDep,
    fmt: Annotated[ExportFormat, Query(alias="format")] = ExportFormat.NDJSON,
    kind: Annotated[ExportKind | None, Query()] = None,
) -> StreamingResponse:
    if fmt is ExportFormat.CSV and kind is None:
        raise ValidationFailed(
            "A CSV export needs `kind`.",
            details=[{"loc": ["query", "kind"], "msg": "Required for CSV.", "type": "missing"}],
        )
    kinds = [kind] if kind is not None else list(ExportKind)
    await org_export.record_export(session, user, org, fmt, kinds)
    return export_download(ctx, db, org.id, fmt, kinds)
