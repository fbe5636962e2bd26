"""Ingest API keys: list, issue (shown once), revoke, rotate."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from milepost_admin.console.deps import Console, ConsoleDep, ConsoleOperator, StoreDep
from milepost_admin.console.pages.organizations import organization_again
from milepost_admin.console.render import flash, page, reveal, see_other
from milepost_admin.console.routing import ConsoleRoute, shown_on
from milepost_admin.console.sessions import SessionStore
from milepost_admin.console.views import filters_of, form_model, list_page
from milepost_admin.deps import ContextDep
from milepost_common.domain.api_keys import service as api_key_service
from milepost_common.domain.api_keys.schemas import ApiKeyCreate, ApiKeyFilters
from milepost_common.domain.audit import service as audit
from milepost_common.domain.audit.schemas import AuditFilters, AuditSort
from milepost_common.domain.organizations import service as org_service
from milepost_common.web.deps import SessionDep

router = APIRouter(route_class=ConsoleRoute)


@router.get("/api-keys", response_class=HTMLResponse)
async def api_keys_page(
    request: Request, console: ConsoleDep, store: StoreDep, session: SessionDep
) -> HTMLResponse:
    filters = await filters_of(request, store, console, ApiKeyFilters, default_sort="-created_at")
    result = await api_key_service.list_api_keys_page(session, filters)
    return await list_page(request, store, console, session, "api_keys", filters, result)


async def _reveal(
    store: SessionStore, console: Console, issued: api_key_service.IssuedKey
) -> Response:
    return await reveal(
        store,
        console,
        title=f"API key “{issued.api_key.name}” ({issued.api_key.prefix}…)",
        secret=issued.secret,
        explain="Copy the key now and hand it to the upstream system: it is shown "
        "only once and cannot be recovered (only its hash is stored).",
        back=f"/admin/api-keys/{issued.api_key.id}",
    )


@router.post("/organizations/{org_id}/api-keys", response_model=None)
@shown_on("issue-key", organization_again)
async def api_key_issue(
    org_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    ctx: ContextDep,
    name: Annotated[str, Form()],
    scopes: Annotated[list[str] | None, Form()] = None,
) -> Response:
    org = await org_service.get_organization(session, org_id)
    data = form_model(ApiKeyCreate, {"name": name, "scopes": scopes or None})
    issued = await api_key_service.issue_api_key(
        session,
        console.principal,
        org.id,
        data.name,
        scopes=data.scopes,
        pepper=ctx.settings.auth.api_key_pepper.get_secret_value(),
    )
    return await _reveal(store, console, issued)


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
    await flash(
        store, console, "ok", f"Key {api_key.prefix}… revoked: ingest refuses it within seconds."
    )
    return see_other(f"/admin/api-keys/{api_key.id}")


@router.post("/api-keys/{key_id}/rotate", response_model=None)
async def api_key_rotate(
    key_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    ctx: ContextDep,
) -> Response:
    api_key = await api_key_service.get_api_key(session, key_id)
    issued = await api_key_service.rotate_api_key(
        session,
        console.principal,
        api_key,
        pepper=ctx.settings.auth.api_key_pepper.get_secret_value(),
    )
    return await _reveal(store, console, issued)
