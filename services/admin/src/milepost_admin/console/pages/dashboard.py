"""The dashboard: system status and the last hour of ingest as charts."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from milepost_admin.console.charts import Series, line_chart
from milepost_admin.console.deps import ConsoleDep, StoreDep
from milepost_admin.console.render import page
from milepost_admin.console.routing import ConsoleRoute
from milepost_admin.deps import ContextDep
from milepost_common.domain.system import service as system_service
from milepost_common.web.deps import SessionDep

router = APIRouter(route_class=ConsoleRoute)


@router.get("/", response_class=HTMLResponse)
async def dashboard(
    request: Request,
    console: ConsoleDep,
    store: StoreDep,
    session: SessionDep,
    ctx: ContextDep,
) -> HTMLResponse:
    status = await system_service.get_system_status(session, ctx.broker)
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
