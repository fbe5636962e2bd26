"""Webhook endpoints (owners): signed POSTs of the organization's events."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from milepost_api.deps import AUTHENTICATED, ByCreation, ContextDep, OwnerUser
from milepost_api.http_cache import REVALIDATE, cache_control
from milepost_common.domain.webhooks import service as webhook_service
from milepost_common.domain.webhooks.errors import WebhookLimitReached, WebhookNotFound
from milepost_common.domain.webhooks.models import DeliveryStatus
from milepost_common.domain.webhooks.schemas import (
    WebhookCreate,
    WebhookDeliveryRead,
    WebhookPingResult,
    WebhookRead,
    WebhookUpdate,
    WebhookWithSecret,
)
from milepost_common.errors import Forbidden, Unauthorized, ValidationFailed
from milepost_common.pagination import Page
from milepost_common.web.deps import DatabaseDep, SessionDep
from milepost_common.web.errors import error_responses

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=AUTHENTICATED)

NotFound = WebhookNotFound


def _with_secret(issued: webhook_service.EndpointWithSecret) -> WebhookWithSecret:
    read = WebhookRead.model_validate(issued.endpoint)
    return WebhookWithSecret(**read.model_dump(), secret=issued.secret)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a webhook endpoint",
    responses=error_responses(Unauthorized, Forbidden, WebhookLimitReached, ValidationFailed),
)
async def create_webhook(
    user: OwnerUser, body: WebhookCreate, session: SessionDep, ctx: ContextDep
) -> WebhookWithSecret:
    """Owners only. The signing secret is in this answer and never again (rotate it to get
    a new one). Each event is POSTed with `Milepost-Event-Id` and
    `Milepost-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{raw body}">`.

    Receivers must be public: a URL at a private or loopback IP address, or at a `localhost`
    name, is refused with 422 unless the server runs with
    `MILEPOST_WEBHOOKS__ALLOW_PRIVATE=true` (local development). Other names are not looked
    up here; every delivery checks the addresses they resolve to.

    An organization has at most 50 endpoints by default (a server setting): one more answers
    409."""
    return _with_secret(
        await webhook_service.create_webhook(
            session,
            user,
            body,
            ctx.box,
            allow_private=ctx.settings.webhooks.allow_private,
            limit=ctx.settings.api.max_webhooks_per_org,
        )
    )


@router.get(
    "",
    summary="List webhook endpoints",
    responses=error_responses(Unauthorized, Forbidden, ValidationFailed),
)
@cache_control(REVALIDATE)
async def list_webhooks(
    user: OwnerUser, session: SessionDep, page: ByCreation
) -> Page[WebhookRead]:
    """Owners only. Ascending by `created_at`."""
    result = await webhook_service.list_webhooks(session, user, page)
    return Page(
        items=[WebhookRead.model_validate(e) for e in result.items],
        next_cursor=result.next_cursor,
    )


@router.get(
    "/{webhook_id}",
    summary="Get a webhook endpoint",
    responses=error_responses(Unauthorized, Forbidden, NotFound, ValidationFailed),
)
@cache_control(REVALIDATE)
async def get_webhook(user: OwnerUser, webhook_id: uuid.UUID, session: SessionDep) -> WebhookRead:
    """Owners only. Never includes the secret."""
    return WebhookRead.model_validate(await webhook_service.get_webhook(session, user, webhook_id))


@router.patch(
    "/{webhook_id}",
    summary="Update a webhook endpoint",
    responses=error_responses(Unauthorized, Forbidden, NotFound, ValidationFailed),
)
async def update_webhook(
    user: OwnerUser,
    webhook_id: uuid.UUID,
    body: WebhookUpdate,
    session: SessionDep,
    ctx: ContextDep,
) -> WebhookRead:
    """Owners only. Only the fields sent change; `enabled: true` re-enables an endpoint
    that was disabled (for instance after a `410 Gone`). A new `url` is checked as at
    creation (422 for a private receiver unless `MILEPOST_WEBHOOKS__ALLOW_PRIVATE`)."""
    return WebhookRead.model_validate(
        await webhook_service.update_webhook(
            session, user, webhook_id, body, allow_private=ctx.settings.webhooks.allow_private
        )
    )


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a webhook endpoint",
    responses=error_responses(Unauthorized, Forbidden, NotFound, ValidationFailed),
)
async def delete_webhook(user: OwnerUser, webhook_id: uuid.UUID, session: SessionDep) -> None:
    """Owners only. Its pending deliveries go with it."""
    await webhook_service.delete_webhook(session, user, webhook_id)


@router.post(
    "/{webhook_id}/rotate-secret",
    summary="Rotate a webhook's signing secret",
    responses=error_responses(Unauthorized, Forbidden, NotFound, ValidationFailed),
)
async def rotate_webhook_secret(
    user: OwnerUser, webhook_id: uuid.UUID, session: SessionDep, ctx: ContextDep
) -> WebhookWithSecret:
    """Owners only. The old secret stops signing at once; the new one is in this answer
    only."""
    return _with_secret(
        await webhook_service.rotate_webhook_secret(session, user, webhook_id, ctx.box)
    )


async def load_ping_target(
    user: OwnerUser, webhook_id: uuid.UUID, db: DatabaseDep, ctx: ContextDep
) -> webhook_service.PingTarget:
    """The endpoint to ping, read in a session of its own that is closed before the ping
    goes out: a slow receiver never holds a pooled connection. Raises WebhookNotFound."""
    async with db.sessionmaker() as session:
        return await webhook_service.get_ping_target(session, user, webhook_id, ctx.box)


PingTargetDep = Annotated[webhook_service.PingTarget, Depends(load_ping_target)]


@router.post(
    "/{webhook_id}/test",
    summary="Send a signed test ping",
    responses=error_responses(Unauthorized, Forbidden, NotFound, ValidationFailed),
)
async def send_test_ping(target: PingTargetDep, ctx: ContextDep) -> WebhookPingResult:
    """Owners only. POSTs a signed `ping` event now and reports what the receiver answered;
    private and loopback addresses are refused. The whole attempt has one deadline (10 s by
    default) and at most 64 KiB of the answer is read."""
    return await webhook_service.send_test_ping(
        target,
        ctx.http,
        allow_private=ctx.settings.webhooks.allow_private,
        limits=ctx.settings.webhooks,
    )


@router.get(
    "/{webhook_id}/deliveries",
    summary="List a webhook's deliveries",
    responses=error_responses(Unauthorized, Forbidden, NotFound, ValidationFailed),
)
@cache_control(REVALIDATE)
async def list_webhook_deliveries(
    user: OwnerUser,
    webhook_id: uuid.UUID,
    session: SessionDep,
    page: ByCreation,
    delivery_status: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
) -> Page[WebhookDeliveryRead]:
    """Owners only. Every event sent to the endpoint with its attempts and last answer,
    ascending by `created_at`."""
    result = await webhook_service.list_webhook_deliveries(
        session, user, webhook_id, page, status=delivery_status
    )
    return Page(
        items=[WebhookDeliveryRead.model_validate(d) for d in result.items],
        next_cursor=result.next_cursor,
    )
