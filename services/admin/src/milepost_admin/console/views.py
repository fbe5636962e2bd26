"""What the console's pages share: filters from the query string, forms read as the
domain's request models, and the filtered list page."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_admin.console.deps import Console, StoreDep
from milepost_admin.console.render import flash, org_names, page
from milepost_common.domain import paging
from milepost_common.errors import ValidationFailed

FiltersT = TypeVar("FiltersT", bound=BaseModel)
PAGE_SIZE = 25


def _problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def invalid(exc: ValidationError) -> ValidationFailed:
    """A form's validation error, in the words the form's page shows."""
    return ValidationFailed(_problem(exc))


async def list_page(
    request: Request,
    store: StoreDep,
    console: Console,
    session: AsyncSession,
    section: str,
    filters: Any,
    result: paging.PageResult[Any],
    **extra: Any,
) -> HTMLResponse:
    """A filtered list (template ``<section>.html``) with its items' organization names."""
    return await page(
        request,
        store,
        console,
        f"{section}.html",
        {
            "section": section,
            "page": result,
            "filters": filters,
            "names": await org_names(session, (item.org_id for item in result.items)),
            **extra,
        },
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
