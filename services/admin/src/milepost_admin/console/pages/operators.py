"""Operators (superadmin): list, invite, role, deactivate, reactivate."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_admin.console.deps import Console, ConsoleDep, ConsoleSuperadmin, StoreDep
from milepost_admin.console.render import flash, page, reveal, see_other
from milepost_admin.console.routing import ConsoleRoute, FormState, shown_on
from milepost_admin.console.sessions import SessionStore
from milepost_admin.console.views import again, filters_of, form_model
from milepost_admin.deps import ContextDep
from milepost_admin.links import operator_invite_url
from milepost_common.domain.operators import service as operator_service
from milepost_common.domain.operators.schemas import OperatorCreate, OperatorFilters
from milepost_common.domain.users.errors import EmailTaken
from milepost_common.domain.users.models import PlatformRole
from milepost_common.web.deps import SessionDep

router = APIRouter(route_class=ConsoleRoute)


async def _operators(
    request: Request,
    console: Console,
    store: SessionStore,
    session: AsyncSession,
    form: FormState | None = None,
) -> HTMLResponse:
    filters = await filters_of(request, store, console, OperatorFilters, default_sort="-created_at")
    result = await operator_service.list_operators(session, filters)
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
            "form": form,
        },
    )


async def operators_again(request: Request, form: FormState) -> HTMLResponse:
    async with again(request) as (session, console, store):
        return await _operators(request, console, store, session, form)


@router.get("/operators", response_class=HTMLResponse)
async def operators_page(
    request: Request, console: ConsoleDep, store: StoreDep, session: SessionDep
) -> HTMLResponse:
    return await _operators(request, console, store, session)


@router.post("/operators", response_model=None)
@shown_on("new-operator", operators_again, fields={EmailTaken: "email"})
async def operator_create(
    console: ConsoleSuperadmin,
    store: StoreDep,
    session: SessionDep,
    ctx: ContextDep,
    email: Annotated[str, Form()],
    role: Annotated[str, Form()],
) -> Response:
    data = form_model(OperatorCreate, {"email": email, "role": role})
    created = await operator_service.create_operator(
        session,
        console.principal,
        email=data.email,
        role=data.role,
        password=data.password,
        name=data.name,
        hasher=ctx.hasher,
    )
    if created.invitation_token is None:
        await flash(store, console, "ok", f"Operator {created.user.email} created.")
        return see_other("/admin/operators")
    return await reveal(
        store,
        console,
        title=f"Invitation for operator {created.user.email}",
        secret=operator_invite_url(ctx.settings, created.invitation_token),
        explain="Send this link to the new operator: it works once, within 48 hours. "
        "It is shown only now.",
        back="/admin/operators",
    )


@router.post("/operators/{operator_id}/role", response_model=None)
@shown_on("operator-actions", operators_again)
async def operator_role(
    operator_id: uuid.UUID,
    console: ConsoleSuperadmin,
    store: StoreDep,
    session: SessionDep,
    role: Annotated[PlatformRole, Form()],
) -> Response:
    operator = await operator_service.get_operator(session, operator_id)
    await operator_service.change_operator_role(session, console.principal, operator, role)
    await flash(store, console, "ok", f"Operator {operator.email} is now {role.value}.")
    return see_other("/admin/operators")


@router.post("/operators/{operator_id}/deactivate", response_model=None)
@shown_on("operator-actions", operators_again)
async def operator_deactivate(
    operator_id: uuid.UUID, console: ConsoleSuperadmin, store: StoreDep, session: SessionDep
) -> Response:
    operator = await operator_service.get_operator(session, operator_id)
    await operator_service.deactivate_operator(session, console.principal, operator)
    await flash(store, console, "ok", f"Operator {operator.email} is deactivated.")
    return see_other("/admin/operators")


@router.post("/operators/{operator_id}/reactivate", response_model=None)
@shown_on("operator-actions", operators_again)
async def operator_reactivate(
    operator_id: uuid.UUID, console: ConsoleSuperadmin, store: StoreDep, session: SessionDep
) -> Response:
    operator = await operator_service.get_operator(session, operator_id)
    await operator_service.reactivate_operator(session, console.principal, operator)
    await flash(store, console, "ok", f"Operator {operator.email} is active again.")
    return see_other("/admin/operators")
