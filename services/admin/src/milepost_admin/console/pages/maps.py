"""An organization's fleet on a map: the page; its script polls the JSON routes of
``routes/maps.py`` with the console's session."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from milepost_admin.console.deps import ConsoleDep, StoreDep
from milepost_admin.console.render import page
from milepost_admin.console.routing import ConsoleRoute
from milepost_admin.deps import ContextDep
from milepost_common.domain.maps import service as map_service
from milepost_common.domain.organizations import service as org_service
from milepost_common.web.deps import SessionDep

router = APIRouter(route_class=ConsoleRoute)
LEAFLET = "vendor/leaflet-1.9.4"


@router.get("/organizations/{org_id}/map", response_class=HTMLResponse)
async def organization_map_page(
    request: Request,
    org_id: uuid.UUID,
    console: ConsoleDep,
    store: StoreDep,
    session: SessionDep,
    ctx: ContextDep,
) -> HTMLResponse:
    org = await org_service.get_organization(session, org_id)
    settings = ctx.settings.admin
    return await page(
        request,
        store,
        console,
        "map.html",
        {
            "section": "organizations",
            "org": org,
            "today": map_service.today_in(org).isoformat(),
            "leaflet": LEAFLET,
            "tile_url": settings.map_tile_url,
            "tile_attribution": settings.map_tile_attribution,
            "poll_ms": int(settings.map_poll_s * 1000),
        },
    )
