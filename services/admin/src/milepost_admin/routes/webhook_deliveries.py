"""Webhook deliveries of every organization: list, inspect, retry a dead one."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Query

from milepost_admin import enqueue
from milepost_admin.deps import AUTH_ERRORS, OperatorUser, SupportUser
from milepost_common.domain.webhooks import service as webhook_service
from milepost_common.domain.webhooks.errors import (
    DeliveryNotDead,
    DeliveryNotFound,
    EndpointDisabled,
)
from milepost_common.domain.webhooks.models import WebhookDelivery
from milepost_common.domain.webhooks.schemas import (
    DeliveryDetail,
    DeliveryFilters,
    DeliveryRead,
    DeliveryRetried,
)
from milepost_common.pagination import Page
from milepost_common.web.deps import PublisherDep, SessionDep
from milepost_common.web.errors import error_responses

router = APIRouter(prefix="/v1/webhook-deliveries", tags=["webhook-deliveries"])


async def load_delivery(delivery_id: uuid.UUID, session: SessionDep) -> WebhookDelivery:
    return await webhook_service.get_delivery(session, delivery_id, for_update=True)


DeliveryDep = Annotated[WebhookDelivery, Depends(load_delivery)]


@router.get("", summary="List webhook deliveries", responses=error_responses(*AUTH_ERRORS))
async def list_deliveries(
    _user: SupportUser, filters: Annotated[DeliveryFilters, Query()], session: SessionDep
) -> Page[DeliveryRead]:
    page = await webhook_service.list_deliveries(session, filters)
    return Page(
        items=[DeliveryRead.model_validate(d) for d in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/{delivery_id}",
    summary="Read a delivery with its payload and every attempt",
    responses=error_responses(*AUTH_ERRORS, DeliveryNotFound),
)
async def get_delivery(_user: SupportUser, delivery: DeliveryDep) -> DeliveryDetail:
    return DeliveryDetail.model_validate(delivery)


@router.post(
    "/{delivery_id}/retry",
    status_code=202,
    summary="Retry a dead delivery (pending again, due now)",
    responses=error_responses(*AUTH_ERRORS, DeliveryNotFound, DeliveryNotDead, EndpointDisabled),
)
async def retry_delivery(
    user: OperatorUser,
    delivery: DeliveryDep,
    session: SessionDep,
    publisher: PublisherDep,
    background: BackgroundTasks,
) -> DeliveryRetried:
    retried = await webhook_service.retry_delivery(session, user, delivery)
    background.add_task(enqueue.deliver_webhook, publisher, retried.id)
    return DeliveryRetried.model_validate(retried)
