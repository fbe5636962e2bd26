"""Webhook deliveries: list, inspect, retry."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, Response

from milepost_admin import enqueue
from milepost_admin.console.deps import ConsoleDep, ConsoleOperator, StoreDep
from milepost_admin.console.render import flash, page, see_other
from milepost_admin.console.routing import ConsoleRoute
from milepost_admin.console.views import filters_of, list_page
from milepost_common.domain.webhooks import service as webhook_service
from milepost_common.domain.webhooks.schemas import DeliveryFilters
from milepost_common.web.deps import PublisherDep, SessionDep

router = APIRouter(route_class=ConsoleRoute)


@router.get("/webhook-deliveries", response_class=HTMLResponse)
async def deliveries_page(
    request: Request, console: ConsoleDep, store: StoreDep, session: SessionDep
) -> HTMLResponse:
    filters = await filters_of(request, store, console, DeliveryFilters, default_sort="-created_at")
    result = await webhook_service.list_deliveries(session, filters)
    return await list_page(request, store, console, session, "deliveries", filters, result)


@router.get("/webhook-deliveries/{delivery_id}", response_class=HTMLResponse)
async def delivery_page(
    request: Request,
    delivery_id: uuid.UUID,
    console: ConsoleDep,
    store: StoreDep,
    session: SessionDep,
) -> HTMLResponse:
    delivery = await webhook_service.get_delivery(session, delivery_id)
    return await page(
        request, store, console, "delivery.html", {"section": "deliveries", "delivery": delivery}
    )


@router.post("/webhook-deliveries/{delivery_id}/retry", response_model=None)
async def delivery_retry(
    delivery_id: uuid.UUID,
    console: ConsoleOperator,
    store: StoreDep,
    session: SessionDep,
    publisher: PublisherDep,
    background: BackgroundTasks,
) -> Response:
    delivery = await webhook_service.get_delivery(session, delivery_id, for_update=True)
    await webhook_service.retry_delivery(session, console.principal, delivery)
    background.add_task(enqueue.deliver_webhook, publisher, delivery.id)
    await flash(store, console, "ok", "Delivery queued again.")
    return see_other(f"/admin/webhook-deliveries/{delivery.id}")
