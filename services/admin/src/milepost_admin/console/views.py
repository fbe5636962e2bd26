"""What the console's pages share: filters from the query string, forms read as the
domain's request models, the filtered list page, and a page shown again after its form
failed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_admin.console.deps import Console, LoginRequired, StoreDep, find_console
from milepost_admin.console.render import flash, org_names, page
from milepost_admin.console.sessions import SessionStore
from milepost_admin.context import AdminContext
from milepost_common.domain import paging
from milepost_common.errors import ValidationFailed

FiltersT = TypeVar("FiltersT", bound=BaseModel)
PAGE_SIZE = 25


def _problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def invalid(exc: ValidationError) -> ValidationFailed:
    """A form's validation errors, one detail per field (the form shows each beside its
    field), the first as the message."""
    details = [
        {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors()
    ]
    return ValidationFailed(_problem(exc), details=details)


@asynccontextmanager
async def again(request: Request) -> AsyncIterator[tuple[AsyncSession, Console, SessionStore]]:
    """A new session and the console's operator, to show a page again after its form
    failed (the form's own transaction is rolled back by then); only reads happen in it."""
    ctx: AdminContext = request.app.state.ctx
    store: SessionStore = request.app.state.ctx.console_sessions
    async with request.app.state.db.sessionmaker() as session:
        ip = request.client.host if request.client else ""
        console = await find_console(request, session, ctx, store, ip)
        if console is None:
            raise LoginRequired("/admin/")
        yield session, console, store


async def list_page(
    request: Request,
    store: StoreDep,
    console: Console,
    session: AsyncSession,
    section: str,
    filters: Any,
    result: paging.PageResult[Any],
    *,
    more_org_ids: Iterable[uuid.UUID] = (),
    **extra: Any,
) -> HTMLResponse:
    """A filtered list (template ``<section>.html``) with the names of its items'
    organizations and of the one it is filtered by."""
    org_ids = [item.org_id for item in result.items]
    names = await org_names(session, [*org_ids, getattr(filters, "org_id", None), *more_org_ids])
    return await page(
        request,
        store,
        console,
        f"{section}.html",
        {"section": section, "page": result, "filters": filters, "names": names, **extra},
    )


async def filters_of(
    request: Request,
    store: StoreDep,
    console: Console,
    model: type[FiltersT],
    *,
    default_sort: str | None = None,
    **fixed: Any,
) -> FiltersT:
    """The page's filters from the query string (sorted by ``default_sort`` unless the user
    chose); bad values are dropped with a notice."""
    defaults = {"limit": str(PAGE_SIZE), **({"sort": default_sort} if default_sort else {})}
    raw = {**defaults, **{k: v for k, v in request.query_params.items() if v != ""}}
    try:
        return model.model_validate({**raw, **fixed})
    except ValidationError as exc:
        await flash(store, console, "error", f"Filter ignored — {_problem(exc)}")
        return model.model_validate({**defaults, **fixed})


def form_model(model: type[FiltersT], data: dict[str, Any]) -> FiltersT:
    """A form's fields as the domain's request model; raises ValidationFailed (422)."""
    try:
        return model.model_validate({k: v for k, v in data.items() if v not in ("", None)})
    except ValidationError as exc:
        raise invalid(exc) from None
