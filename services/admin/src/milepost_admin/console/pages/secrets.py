"""The page a created secret is shown on, once: the form that created it redirected here."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from milepost_admin.console.deps import ConsoleDep, StoreDep
from milepost_admin.console.render import page
from milepost_admin.console.routing import ConsoleRoute

router = APIRouter(route_class=ConsoleRoute)


@router.get("/secret", response_class=HTMLResponse)
async def secret_page(request: Request, console: ConsoleDep, store: StoreDep) -> HTMLResponse:
    """Takes the secret kept for this session: a reload (or the back button) finds it gone."""
    kept = await store.take(console.token, "secret")
    return await page(request, store, console, "secret.html", {"shown": kept})
