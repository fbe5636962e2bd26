"""Reports: the per-vehicle, per-day summary (JSON, cached briefly) and CSV exports
(streamed: the body is produced by its own database session after the request's one has
closed, so a large export never holds a request transaction open)."""

from __future__ import annotations

import csv
import hashlib
import io
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import date, datetime
from typing import Annotated, Any, NamedTuple

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from milepost_api.deps import (
    AUTHENTICATED,
    DATE_TEXT,
    CurrentUser,
    InstantOrDate,
    bearer,
    context_of,
    current_user,
)
from milepost_api.direct import UUID_TEXT, DirectRoute, direct
from milepost_api.http_cache import HISTORY, cache_control
from milepost_common.db import Database, unit_of_work
from milepost_common.domain import paging
from milepost_common.domain.devices.errors import DeviceNotFound
from milepost_common.domain.principals import Principal
from milepost_common.domain.reports import service as report_service
from milepost_common.domain.reports.schemas import GroupBy, SummaryReport
from milepost_common.errors import Unauthorized, ValidationFailed
from milepost_common.live import CACHE_KEY_PREFIX
from milepost_common.spreadsheets import cell_text
from milepost_common.web.deps import SessionDep, database_of
from milepost_common.web.downloads import download
from milepost_common.web.errors import error_responses

router = APIRouter(
    prefix="/v1/reports", tags=["reports"], responses=AUTHENTICATED, route_class=DirectRoute
)

From = Annotated[
    InstantOrDate | None,
    Query(
        alias="from",
        description="Inclusive start: ISO 8601 with offset, or a date (midnight in the "
        "organization's time zone). Default: 7 days before `to`; without both, the last 7 "
        "whole days in the organization's time zone (today excluded).",
    ),
]
To = Annotated[
    InstantOrDate | None,
    Query(
        alias="to",
        description="Exclusive end, like `from`; at most 366 days after it. Default: 7 days "
        "after `from`; without both, today's midnight in the organization's time zone.",
    ),
]
VehicleFilter = Annotated[uuid.UUID | None, Query(description="Only this vehicle.")]
CSV = "text/csv; charset=utf-8"
RowSource = Callable[
    [Any, Principal, paging.Window, uuid.UUID | None], AsyncIterator[Sequence[Any]]
]


def _cache_key(user: Principal, *parts: object) -> str:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest()
    return f"{CACHE_KEY_PREFIX}summary:{user.require_org()}:{digest}"


_SUMMARY_QUERY = frozenset({"from", "to", "vehicle_id", "group_by"})


def _plain_date(raw: str | None) -> date | None:
    """A `YYYY-MM-DD` that is a real date, read as FastAPI reads it; raises ValueError for
    anything else."""
    if raw is None:
        return None
    if DATE_TEXT.fullmatch(raw) is None:
        raise ValueError(raw)
    return date.fromisoformat(raw)


class _CommonSummary(NamedTuple):
    start: date | None
    end: date | None
    vehicle_id: uuid.UUID | None
    group_by: GroupBy


def _common_summary(request: Request) -> _CommonSummary | None:
    """The parameters of a summary read in their plain forms (each bound absent or a
    `YYYY-MM-DD` date, the vehicle absent or a hyphenated id, the grouping absent or a valid
    one; of a repeated one the last), read as FastAPI reads them; None for any other read (a
    bound with a time among them), which FastAPI then resolves."""
    query = request.query_params
    if not _SUMMARY_QUERY.issuperset(query.keys()):
        return None
    raw_vehicle, raw_group = query.get("vehicle_id"), query.get("group_by", GroupBy.DAY)
    if raw_group not in GroupBy.__members__.values():
        return None
    if raw_vehicle is not None and UUID_TEXT.fullmatch(raw_vehicle) is None:
        return None
    try:
        start, end = _plain_date(query.get("from")), _plain_date(query.get("to"))
    except ValueError:
        return None
    vehicle_id = uuid.UUID(raw_vehicle) if raw_vehicle is not None else None
    return _CommonSummary(start, end, vehicle_id, GroupBy(raw_group))


async def _summarize_directly(request: Request) -> Response | None:
    """``summarize`` for the common reads, without FastAPI's resolution (``direct``)."""
    common = _common_summary(request)
    if common is None:
        return None
    user = await current_user(request, await bearer(request))
    return await summarize(user, request, *common)


@router.get(
    "/summary",
    summary="Summary per vehicle and day",
    response_model=SummaryReport,
    responses=error_responses(Unauthorized, DeviceNotFound, ValidationFailed),
)
@cache_control(HISTORY)
@direct(_summarize_directly)
async def summarize(
    user: CurrentUser,
    request: Request,
    start: From = None,
    end: To = None,
    vehicle_id: VehicleFilter = None,
    group_by: GroupBy = GroupBy.DAY,
) -> Response:
    """Distance, driving time, time stopped, stops, max speed and alerts per vehicle and
    day, with the vehicle's name and plate, days cut in the organization's time zone;
    vehicles without activity are left out. Metres and km/h rounded to 0.1, durations to
    whole seconds. Without `from` and `to`: the last 7 whole days. An answer is kept up to
    60 s: trips ended meanwhile, or a change of the organization's time zone, show in the
    next one."""
    ctx, db = context_of(request), database_of(request)
    # A read-only session, opened lazily: a cached answer with both bounds given never
    # checks a connection out.
    async with db.sessionmaker() as session:
        if start is None or end is None:
            # Resolved before the cache is asked: every request of a day shares one entry.
            start, end = await report_service.report_range(session, user, start, end)

        async def compute() -> bytes:
            # No connection held while a turn is waited for (a no-op without a query).
            await session.rollback()
            async with ctx.summaries:
                return await report_service.summary_json(
                    session, user, start, end, vehicle_id=vehicle_id, group_by=group_by
                )

        report = await ctx.responses.cached(
            _cache_key(user, start, end, vehicle_id, group_by),
            ctx.settings.api.summary_cache_s,
            compute,
        )
    return await ctx.responses.response(request, report, "application/json")


def _csv_line(row: Sequence[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([_csv_cell(value) for value in row])
    return buffer.getvalue()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return cell_text(value) if isinstance(value, str) else value


async def _stream(
    db: Database,
    user: Principal,
    window: paging.Window,
    vehicle_id: uuid.UUID | None,
    header: Sequence[str],
    source: RowSource,
) -> AsyncIterator[str]:
    yield _csv_line(header)
    async with unit_of_work(db) as session:
        chunk: list[str] = []
        async for row in source(session, user, window, vehicle_id):
            chunk.append(_csv_line(row))
            if len(chunk) >= report_service.STREAM_CHUNK_ROWS:
                yield "".join(chunk)
                chunk = []
        if chunk:
            yield "".join(chunk)


def _csv_response(
    request: Request,
    user: Principal,
    window: paging.Window,
    vehicle_id: uuid.UUID | None,
    name: str,
    header: Sequence[str],
    source: RowSource,
) -> StreamingResponse:
    """The export's streamed answer, or 503 while the process streams as many downloads as
    it may (``web.downloads``)."""
    ctx, db = context_of(request), database_of(request)
    return download(
        _stream(db, user, window, vehicle_id, header, source),
        turns=ctx.exports,
        at_once=ctx.settings.api.exports_at_once,
        send_timeout_s=ctx.settings.api.export_send_timeout_s,
        media_type=CSV,
        filename=name,
    )


_CSV_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {CSV: {"schema": {"type": "string"}}}, "description": "CSV with a header."}
}


@router.get(
    "/summary.csv",
    summary="Summary per vehicle and day as CSV",
    response_class=StreamingResponse,
    responses={**_CSV_DOC, **error_responses(Unauthorized, DeviceNotFound, ValidationFailed)},
)
@cache_control(HISTORY)
async def export_summary(
    user: CurrentUser,
    request: Request,
    session: SessionDep,
    start: From = None,
    end: To = None,
    vehicle_id: VehicleFilter = None,
) -> StreamingResponse:
    """The summary's rows as CSV, streamed: the JSON report's columns, rounded alike
    (`vehicle_name` and `vehicle_plate` empty for rows of an earlier tenure).

    A server streams a few exports at once: past them it answers 503 `unavailable` with
    `Retry-After`, and an export whose client takes no chunk for a while (30 s by default) is
    cut off."""
    window = await report_service.prepare_export(session, user, start, end, vehicle_id)
    return _csv_response(
        request,
        user,
        window,
        vehicle_id,
        "summary.csv",
        report_service.SUMMARY_COLUMNS,
        report_service.iter_summary_rows,
    )


@router.get(
    "/trips.csv",
    summary="Trips as CSV",
    response_class=StreamingResponse,
    responses={**_CSV_DOC, **error_responses(Unauthorized, DeviceNotFound, ValidationFailed)},
)
@cache_control(HISTORY)
async def export_trips(
    user: CurrentUser,
    request: Request,
    session: SessionDep,
    start: From = None,
    end: To = None,
    vehicle_id: VehicleFilter = None,
) -> StreamingResponse:
    """Every trip that started in `[from, to)`, by start time, streamed in chunks, with the
    vehicle's name and plate; metres and km/h rounded to 0.1, durations to whole seconds.

    A server streams a few exports at once: past them it answers 503 `unavailable` with
    `Retry-After`, and an export whose client takes no chunk for a while (30 s by default) is
    cut off."""
    window = await report_service.prepare_export(session, user, start, end, vehicle_id)
    return _csv_response(
        request,
        user,
        window,
        vehicle_id,
        "trips.csv",
        report_service.TRIP_COLUMNS,
        report_service.iter_trip_rows,
    )
