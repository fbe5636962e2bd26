"""The audit log: filter by actor, organization, action, target and time; cursor pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from milepost_admin.deps import AUTH_ERRORS, SupportUser
from milepost_common.domain.audit import service as audit
from milepost_common.domain.audit.schemas import AuditEntryRead, AuditFilters
from milepost_common.errors import ValidationFailed
from milepost_common.pagination import Page
from milepost_common.web.deps import SessionDep
from milepost_common.web.errors import error_responses

router = APIRouter(prefix="/v1/audit-log", tags=["audit-log"])


@router.get(
    "",
    summary="Read the audit log",
    responses=error_responses(*AUTH_ERRORS, ValidationFailed),
)
async def list_audit_entries(
    _user: SupportUser, filters: Annotated[AuditFilters, Query()], session: SessionDep
) -> Page[AuditEntryRead]:
    page = await audit.list_audit_entries(session, filters)
    return Page(
        items=[AuditEntryRead.model_validate(e) for e in page.items], next_cursor=page.next_cursor
    )
