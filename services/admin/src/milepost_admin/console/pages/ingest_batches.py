"""Ingest batches: list, inspect, replay one or all failed."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, Response

from milepost_admin import enqueue
from milepost_admin.console.deps import ConsoleDep, ConsoleOperator, StoreDep
from milepost_admin.console.render import flash, page, see_other
from milepost_admin.console.routing import ConsoleRoute
from milepost_admin.console.views import filters_of, list_page
from milepost_common.domain.ingest_batches import queries as batch_queries
from milepost_common.domain.ingest_batches import service as ingest_service
from milepost_common.domain.ingest_batches.admin_schemas import BatchFilters
from milepost_common.domain.organizations import service as org_service
from milepost_common.web.deps import DatabaseDep, PublisherDep, SessionDep

router = APIRouter(route_class=ConsoleRoute)


@router.get("/ingest-batches", response_class=HTMLResponse)
async def batches_page(
    request: Request, console: ConsoleDep, store: StoreDep, session: SessionDep
) -> HTMLResponse:
    filters = await filters_of(request, store, console, BatchFilters, default_sort="-received_at")
    result = await batch_queries.list_batches(session, filters)
    return await list_page(request, store, console, session, "batches", filters, result)


@router.get("/ingest-batches/{batch_id}", response_class=HTMLResponse)
async def batch_page(
    request: Request,
    batch_id: uuid.UUID,
    console: ConsoleDep,
    store: StoreDep,
    session: SessionDep,
) -> HTMLResponse:
    batch = await batch_queries.get_batch(session, batch_id)
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
    batch = await batch_queries.get_batch(session, batch_id)
    before = batch.rejected
    replayed = await ingest_service.replay_batch(session, console.principal, batch)
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
    replayed = [
        await ingest_service.replay_batch(session, console.principal, batch)
        for batch in await batch_queries.failed_batches(session, org.id)
    ]
    background.add_task(enqueue.process_batches, db, publisher, [b.id for b in replayed])
    await flash(store, console, "ok", f"{len(replayed)} failed batch(es) replayed.")
    return see_other(f"/admin/ingest-batches?org_id={org.id}")
