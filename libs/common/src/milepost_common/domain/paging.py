"""Keyset pages for the read side: ``(sort key, id)`` cursors over allow-listed columns.

A page is fetched with ``limit + 1`` rows: the extra row only tells whether another page
exists. The cursor is the last returned row's sort key and id, so a page never skips or
repeats rows however many are inserted meanwhile; it names its sort too, so that a cursor
used with another sort (or holding a key of another type) is a 422, never a comparison of a
time with a distance.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import func, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement, Select
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from milepost_common.domain.base import ModelT
from milepost_common.errors import ValidationFailed
from milepost_common.pagination import cursor_time, decode_cursor, encode_cursor

T = TypeVar("T")
RowT = TypeVar("RowT")
# Where a nullable time sorts (``last_login_at`` never set): before every real time, so
# newest first puts never-seen rows last. A constant, so cursors compare like any time.
NEVER = datetime(1970, 1, 1, tzinfo=UTC)
QueryT = TypeVar("QueryT", bound="Select[*tuple[Any, ...]]")


@dataclass(frozen=True, slots=True)
class Sort:
    """A validated ``?sort=``: one allow-listed field, ascending or descending."""

    field: str
    descending: bool = False

    @property
    def label(self) -> str:
        """As a client writes it (``-start_time``): what a cursor names its sort by."""
        return f"-{self.field}" if self.descending else self.field


@dataclass(frozen=True, slots=True)
class Window:
    """``?from=`` and ``?to=``: the half-open interval ``[start, end)`` of the item's time."""

    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int
    cursor: str | None = None
    sort: Sort | None = None


class Listing(Protocol):
    """An operator list's filters, as far as paging goes: a page of ``limit`` rows after
    ``cursor`` by ``sort`` (an allow-listed ``field`` or ``-field``, validated by its enum)."""

    @property
    def sort(self) -> str: ...

    @property
    def limit(self) -> int: ...

    @property
    def cursor(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class PageResult(Generic[T]):
    items: list[T]
    next_cursor: str | None


def parse_sort(raw: str | None, allowed: Sequence[str], default: str) -> Sort:
    """``name`` or ``-name`` from the allow-list; anything else is a 422."""
    if not raw:
        return Sort(default)
    name = raw.removeprefix("-")
    if name not in allowed:
        raise ValidationFailed(
            f"Cannot sort by {name!r}.",
            details=[
                {
                    "loc": ["query", "sort"],
                    "msg": f"Allowed: {', '.join(allowed)} (prefix '-' for descending).",
                    "type": "value_error",
                }
            ],
        )
    return Sort(name, raw.startswith("-"))


def time_window(query: QueryT, column: Any, window: Window) -> QueryT:
    if window.start is not None:
        query = query.where(column >= window.start)
    if window.end is not None:
        query = query.where(column < window.end)
    return query


def _invalid_cursor() -> ValidationFailed:
    return ValidationFailed(
        "Invalid cursor.",
        details=[{"loc": ["query", "cursor"], "msg": "Invalid cursor.", "type": "value_error"}],
    )


def _cursor_key(raw: Any, sort: Sort, key: Any) -> Any:
    """The key a cursor holds, if it was made for ``sort`` and is of ``key``'s type."""
    if not (isinstance(raw, list) and len(raw) == 2 and raw[0] == sort.label):
        raise _invalid_cursor()
    value = raw[1]
    try:
        expected: type = key.type.python_type
    except (AttributeError, NotImplementedError):
        expected = object
    if expected is datetime:
        return cursor_time(value)
    if expected in (int, float):
        valid = type(value) in (int, float)
    elif expected is str:
        valid = type(value) is str
    else:
        valid = isinstance(value, str | int | float)
    if not valid:
        raise _invalid_cursor()
    return value


def keyset(
    query: QueryT,
    key: ColumnElement[Any] | Any,
    id_column: ColumnElement[Any] | Any,
    *,
    limit: int,
    cursor: str | None,
    sort: Sort,
) -> QueryT:
    """Order by ``(key, id)`` (``key`` being ``sort``'s column) and start after the cursor;
    fetches ``limit + 1`` rows."""
    if cursor is not None:
        raw_key, last_id = decode_cursor(cursor)
        after = (_cursor_key(raw_key, sort, key), last_id)
        pair = tuple_(key, id_column)
        query = query.where(pair < after if sort.descending else pair > after)
    if sort.descending:
        query = query.order_by(key.desc(), id_column.desc())
    else:
        query = query.order_by(key.asc(), id_column.asc())
    return query.limit(limit + 1)


async def org_page(
    session: AsyncSession,
    model: type[ModelT],
    org_id: uuid.UUID,
    page: PageRequest,
    *,
    default_sort: str = "created_at",
    narrowed: SelectOfScalar[ModelT] | None = None,
) -> PageResult[ModelT]:
    """One organization's rows (of ``narrowed`` when given: the caller's further filters) by
    the page's allow-listed sort, else ``default_sort``."""
    sort = page.sort or Sort(default_sort)
    base = narrowed if narrowed is not None else select(model)
    query = keyset(
        base.where(col(model.org_id) == org_id),  # type: ignore[attr-defined]
        col(getattr(model, sort.field)),
        col(model.id),  # type: ignore[attr-defined]
        limit=page.limit,
        cursor=page.cursor,
        sort=sort,
    )
    rows = list((await session.scalars(query)).all())
    return page_of(rows, page.limit, lambda r: (getattr(r, sort.field), r.id), sort=sort)  # type: ignore[attr-defined]


def page_of(
    rows: Sequence[RowT],
    limit: int,
    cursor_of: Callable[[RowT], tuple[Any, uuid.UUID]],
    *,
    sort: Sort,
) -> PageResult[RowT]:
    """Cut the ``limit + 1`` rows to a page and name the cursor of the next one (by
    ``sort``, the one :func:`keyset` ordered them by)."""
    items = list(rows[:limit])
    if len(rows) <= limit or not items:
        return PageResult(items, None)
    key, item_id = cursor_of(items[-1])
    return PageResult(items, encode_cursor([sort.label, key], item_id))


async def sorted_page(
    session: AsyncSession, query: SelectOfScalar[ModelT], model: type[ModelT], listing: Listing
) -> PageResult[ModelT]:
    """A keyset page of ``query`` by the listing's sort (of ``model``'s fields), ties broken
    by id. A nullable time sorts as ``NEVER``; text sorts by the database's collation."""
    limit, cursor = listing.limit, listing.cursor
    sort = Sort(listing.sort.removeprefix("-"), listing.sort.startswith("-"))
    column = col(getattr(model, sort.field))
    is_time = sort.field.endswith(("_at", "_time"))
    nullable = bool(getattr(column, "nullable", False)) and is_time
    key = func.coalesce(column, NEVER) if nullable else column
    paged = keyset(
        query,
        key,
        col(model.id),  # type: ignore[attr-defined]
        limit=limit,
        cursor=cursor,
        sort=sort,
    )
    rows = list((await session.scalars(paged)).all())

    def cursor_of(row: Any) -> tuple[Any, uuid.UUID]:
        value = getattr(row, sort.field)
        return (NEVER if value is None and nullable else value), row.id

    return page_of(rows, limit, cursor_of, sort=sort)
