"""Organizations' users: list, create or invite, role, deactivate, password reset."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_admin.console.deps import Console, ConsoleDep, ConsoleOperator, StoreDep
from milepost_admin.console.pages.organizations import organization_again
from milepost_admin.console.render import flash, page, reveal, see_other
from milepost_admin.console.routing import ConsoleRoute, FormState, shown_on
from milepost_admin.console.sessions import SessionStore
from milepost_admin.console.views import again, filters_of, form_model, list_page
from milepost_admin.deps import ContextDep
from milepost_admin.links import invite_url, reset_url
from milepost_common.domain.audit import service as audit
from milepost_common.domain.audit.schemas import AuditFilters, AuditSort
from milepost_common.domain.organizations import service as org_service
from milepost_common.domain.users import service as user_service
from milepost_common.domain.users.errors import EmailTaken, LastOwner
from milepost_common.domain.users.models import OrgRole
from milepost_common.domain.users.schemas import UserCreate, UserFilters
from milepost_common.web.deps import SessionDep

router = APIRouter(route_class=ConsoleRoute)


@router.get("/users", response_class=HTMLResponse)
async def users_page(
    request: Request, console: ConsoleDep, store: StoreDep, session: SessionDep
) -> HTMLResponse:
    filters = await filters_of(request, store, console, UserFilters, default_sort="-created_at")
    result = await user_service.list_users(session, filters)
    return await list_page(
        request, store, console, session, "users", filters, result, roles=list(OrgRole)
    )


@router.post("/organizations/{org_id}/users", response_model=None)
@shown_on("new-user", organization_again, fields={EmailTaken: "email"})
async def user_create(
    org_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    ctx: ContextDep,
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
        session, console.principal, org.id, data, hasher=ctx.hasher
    )
    if created.invitation_token is None:
        await flash(store, console, "ok", f"User {created.user.email} created.")
        return see_other(f"/admin/users/{created.user.id}")
    return await reveal(
        store,
        console,
        title=f"Invitation for {created.user.email}",
        secret=invite_url(ctx.settings, created.invitation_token),
        explain="Send this link to the person: it lets them choose a password, once, "
        "within 48 hours. It is shown only now.",
        back=f"/admin/users/{created.user.id}",
    )


async def _user(
    request: Request,
    user_id: uuid.UUID,
    console: Console,
    store: SessionStore,
    session: AsyncSession,
    form: FormState | None = None,
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
            "form": form,
        },
    )


async def user_again(request: Request, form: FormState) -> HTMLResponse:
    """The user's page with the refused action's error."""
    async with again(request) as (session, console, store):
        user_id = uuid.UUID(str(request.path_params["user_id"]))
        return await _user(request, user_id, console, store, session, form)


@router.get("/users/{user_id}", response_class=HTMLResponse)
async def user_page(
    request: Request,
    user_id: uuid.UUID,
    console: ConsoleDep,
    store: StoreDep,
    session: SessionDep,
) -> HTMLResponse:
    return await _user(request, user_id, console, store, session)


@router.post("/users/{user_id}/role", response_model=None)
@shown_on("role", user_again, fields={LastOwner: "role"})
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
@shown_on("actions", user_again)
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
    user_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    ctx: ContextDep,
) -> Response:
    target = await user_service.get_user(session, user_id)
    raw = await user_service.reset_user_password(session, console.principal, target)
    return await reveal(
        store,
        console,
        title=f"Password reset for {target.email}",
        secret=reset_url(ctx.settings, raw),
        explain="Send this link to the person: it works once, within 48 hours. "
        "It is shown only now.",
        back=f"/admin/users/{target.id}",
    )
