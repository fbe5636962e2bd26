"""Ingest batches: list, inspect, replay one or all failed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, Response

from milepost_admin import enqueue
from milepost_admin.console.deps import ConsoleDep, ConsoleOperator, StoreDep
from milepost_admin.console.render import flash, page, see_other
from milepost_admin.console.routing import ConsoleRoute
from milepost_admin.console.views import filters_of, list_page
from milepost_common.domain import paging
from milepost_common.domain.ingest_batches import operators as batch_operators
from milepost_common.domain.ingest_batches.models import BatchSource, BatchStatus
from milepost_common.domain.ingest_batches.schemas import BatchFilters, OsmandDevice
from milepost_common.domain.organizations import service as org_service
from milepost_common.web.deps import DatabaseDep, PublisherDep, SessionDep

router = APIRouter(route_class=ConsoleRoute)
SUMMARY_WINDOW_H = 24


@router.get("/ingest-batches", response_class=HTMLResponse)
async def batches_page(
    request: Request, console: ConsoleDep, store: StoreDep, session: SessionDep
) -> HTMLResponse:
    """Batches newest first; OsmAnd's one-fix batches summed up per device (unless the
    operator asks for one row each), so the other pushes stay visible and a failed fix is
    one click away from its device's row."""
    filters = await filters_of(request, store, console, BatchFilters, default_sort="-received_at")
    grouped = request.query_params.get("osmand") != "each"
    osmand: list[OsmandDevice] | None = None
    if not grouped:
        result = await batch_operators.list_batches(session, filters)
    else:
        if filters.source is BatchSource.OSMAND:
            result = paging.PageResult([], None)
        else:
            result = await batch_operators.list_batches(
                session, filters, exclude_source=BatchSource.OSMAND
            )
        if filters.source in (None, BatchSource.OSMAND) and filters.cursor is None:
            osmand = await batch_operators.osmand_by_device(session, _summary_window(filters))
    return await list_page(
        request,
        store,
        console,
        session,
        "batches",
        filters,
        result,
        more_org_ids=[row.org_id for row in osmand or []],
        grouped=grouped,
        osmand=osmand,
        osmand_window_h=None if filters.from_ or filters.status else SUMMARY_WINDOW_H,
        sources=list(BatchSource),
        statuses=list(BatchStatus),
    )


def _summary_window(filters: BatchFilters) -> BatchFilters:
    """The filters of the per-device summary: the last day unless a start or a status (a
    failed batch of any age) is asked for, so the page never sums a year of fixes."""
    if filters.from_ is not None or filters.status is not None:
        return filters
    since = datetime.now(UTC) - timedelta(hours=SUMMARY_WINDOW_H)
    return filters.model_copy(update={"from_": since})


@router.get("/ingest-batches/{batch_id}", response_class=HTMLResponse)
async def batch_page(
    request: Request,
    batch_id: uuid.UUID,
    console: ConsoleDep,
    store: StoreDep,
    session: SessionDep,
) -> HTMLResponse:
    batch = await batch_operators.get_batch_for_operator(session, batch_id)
    return await page(
        request,
        store,
        console,
        "batch.html",
        {
            "section": "batches",
            "batch": batch,
            "org": await org_service.get_organization(session, batch.org_id),
        },
    )


@router.post("/ingest-batches/{batch_id}/replay", response_model=None)
async def batch_replay(
    batch_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    db: DatabaseDep,
    publisher: PublisherDep,
    background: BackgroundTasks,
) -> Response:
    batch = await batch_operators.get_batch_for_operator(session, batch_id)
    before = batch.rejected
    replayed = await batch_operators.replay_batch(session, console.principal, batch)
    background.add_task(enqueue.process_batches, db, publisher, [replayed.id])
    await flash(
        store,
        console,
        "ok",
        f"Batch replayed: {before - replayed.rejected} item(s) stored now, "
        f"{replayed.rejected} still rejected; processing again.",
    )
    return see_other(f"/admin/ingest-batches/{replayed.id}")


@router.post("/organizations/{org_id}/replay-failed", response_model=None)
async def batches_replay_failed(
    org_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    db: DatabaseDep,
    publisher: PublisherDep,
    background: BackgroundTasks,
) -> Response:
    org = await org_service.get_organization(session, org_id)
    replayed = await batch_operators.replay_failed_batches(session, console.principal, org.id)
    background.add_task(enqueue.process_batches, db, publisher, [b.id for b in replayed])
    await flash(store, console, "ok", f"{len(replayed)} failed batch(es) replayed.")
    return see_other(f"/admin/ingest-batches?org_id={org.id}")
