"""The audit log, filtered."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from milepost_admin.console.deps import ConsoleDep, StoreDep
from milepost_admin.console.routing import ConsoleRoute
from milepost_admin.console.views import filters_of, list_page
from milepost_common.domain.audit import service as audit
from milepost_common.domain.audit.schemas import AuditFilters
from milepost_common.web.deps import SessionDep

router = APIRouter(route_class=ConsoleRoute)


@router.get("/audit-log", response_class=HTMLResponse)
async def audit_page(
    request: Request, console: ConsoleDep, store: StoreDep, session: SessionDep
) -> HTMLResponse:
    filters = await filters_of(request, store, console, AuditFilters, default_sort="-occurred_at")
    result = await audit.list_audit_entries(session, filters)
    return await list_page(request, store, console, session, "audit", filters, result)
