"""Suggestions for the filters' search boxes: ``<option>`` elements that htmx puts in the
box's ``<datalist>`` as the operator types (no script of our own, CSP ``script-src 'self'``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from milepost_admin.console.deps import ConsoleDep
from milepost_admin.console.render import TEMPLATES
from milepost_admin.console.routing import ConsoleRoute
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.organizations import service as org_service
from milepost_common.web.deps import SessionDep

router = APIRouter(route_class=ConsoleRoute)
Part = Annotated[str, Query(max_length=200)]


def _options(request: Request, options: list[tuple[str, str]]) -> HTMLResponse:
    response = TEMPLATES.TemplateResponse(request, "_options.html", {"options": options})
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/suggest/organizations", response_class=HTMLResponse)
async def suggest_organizations(
    request: Request,
    _console: ConsoleDep,
    session: SessionDep,
    org_name: Part = "",
) -> HTMLResponse:
    names = await org_service.suggest_names(session, org_name)
    return _options(request, [(name, "") for name in names])


@router.get("/suggest/devices", response_class=HTMLResponse)
async def suggest_devices(
    request: Request,
    _console: ConsoleDep,
    session: SessionDep,
    device: Part = "",
) -> HTMLResponse:
    devices = await device_service.suggest_devices(session, device)
    return _options(request, [(d.unique_id, d.name) for d in devices])
