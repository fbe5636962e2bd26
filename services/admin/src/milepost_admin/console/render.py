"""Rendering console pages: templates, the shared context, flashes, the page CSP."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_admin.console.deps import Console
from milepost_admin.console.routing import FormState
from milepost_admin.console.sessions import SessionStore
from milepost_admin.settings import map_tile_source
from milepost_common.domain.organizations import service as organization_service
from milepost_common.domain.users.models import PlatformRole
from milepost_common.web.errors import ErrorAnswer

TEMPLATES = Jinja2Templates(directory=str(files("milepost_admin") / "templates"))
CSP_TEMPLATE = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src {img_src}; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@lru_cache(maxsize=8)
def content_security_policy(tile_url: str) -> str:
    """The console's CSP: images from the app itself and from the map's tile server only."""
    img_src = "'self' data:" + (f" {map_tile_source(tile_url)}" if tile_url else "")
    return CSP_TEMPLATE.format(img_src=img_src)


def static_url(name: str) -> str:
    return f"/admin/static/{name}"


def with_query(request: Request, **changes: Any) -> str:
    params = dict(request.query_params)
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = str(value)
    return f"{request.url.path}?{urlencode(params)}" if params else request.url.path


def sort_link(request: Request, current: str, field: str, *, newest_first: bool = True) -> str:
    """The list's URL sorted by ``field``: descending first (newest, Z to A) unless
    ``newest_first`` is off (names: A to Z first), the other way when already so; the
    cursor is dropped (it belongs to the previous order)."""
    first = f"-{field}" if newest_first else field
    other = field if newest_first else f"-{field}"
    return with_query(request, sort=other if current == first else first, cursor=None)


_VEHICLE = re.compile(r"\b([Vv])ehicle(s?)\b")


def console_text(message: str) -> str:
    """A domain message in the console's words: the public API's vehicles are devices here."""
    return _VEHICLE.sub(
        lambda m: ("D" if m.group(1) == "V" else "d") + "evice" + m.group(2), message
    )


def sent(form: Any, form_id: str, name: str, default: Any = "") -> Any:
    """The value a form sent back with errors had (``default`` on a page shown afresh)."""
    return form.value(form_id, name, default) if isinstance(form, FormState) else default


def checked(form: Any, form_id: str, name: str, option: str, default: bool) -> bool:
    """Whether a sent-back form had this checkbox ticked (``default`` on a fresh page)."""
    return form.chosen(form_id, name, option, default) if isinstance(form, FormState) else default


TEMPLATES.env.globals.update(
    static=static_url, with_query=with_query, sort_link=sort_link, sent=sent, checked=checked
)
TEMPLATES.env.filters["console_text"] = console_text


async def flash(store: SessionStore, console: Console, kind: str, text: str) -> None:
    console.record.flash.append((kind, text))
    await store.save(console.token, console.record)


async def page(
    request: Request,
    store: SessionStore,
    console: Console | None,
    template: str,
    context: Mapping[str, Any],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """A full page (or, for an htmx request, the same page: htmx selects what it needs)."""
    flashes: list[tuple[str, str]] = []
    if console is not None and console.record.flash:
        flashes, console.record.flash = console.record.flash, []
        await store.save(console.token, console.record)
    return _rendered(request, template, _shared(console, flashes) | dict(context), status_code)


def error_page(request: Request, error: ErrorAnswer, *, back: str) -> HTMLResponse:
    """The console's page for an error (no session needed: it may answer a 500)."""
    context = _shared(None, []) | {"error": error, "back": back}
    return _rendered(request, "error.html", context, error.status_code)


def _shared(console: Console | None, flashes: list[tuple[str, str]]) -> dict[str, Any]:
    """What every page's frame shows: who is logged in, what they may do, the flashes."""
    return {
        "me": console.user if console else None,
        "csrf": console.record.csrf if console else None,
        "can_write": console.can(PlatformRole.OPERATOR) if console else False,
        "is_superadmin": console.can(PlatformRole.SUPERADMIN) if console else False,
        "flashes": flashes,
    }


def _rendered(
    request: Request, template: str, context: dict[str, Any], status_code: int
) -> HTMLResponse:
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)
    tile_url = request.app.state.settings.admin.map_tile_url
    response.headers["Content-Security-Policy"] = content_security_policy(tile_url)
    response.headers["Cache-Control"] = "no-store"
    return response


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


async def reveal(
    store: SessionStore, console: Console, *, title: str, secret: str, explain: str, back: str
) -> RedirectResponse:
    """Show a created secret once: kept beside the session, the form answers with a redirect
    to the page that takes it (a reload finds it gone and re-submits nothing)."""
    payload = {"title": title, "secret": secret, "explain": explain, "back": back}
    await store.keep(console.token, "secret", payload)
    return see_other("/admin/secret")


async def org_names(session: AsyncSession, ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    wanted = {i for i in ids if i is not None}
    found = await organization_service.find_organizations(session, wanted)
    return {org_id: org.name for org_id, org in found.items()}
