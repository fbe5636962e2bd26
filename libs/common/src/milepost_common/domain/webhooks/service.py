"""Webhook endpoints of an organization: CRUD, secret rotation, a signed test ping, and
the list of deliveries; for operators, every organization's deliveries and putting a dead
one back in the queue.

The signing secret is generated here, encrypted at rest with the SecretBox, and returned in
plaintext only on creation and on rotation. The test ping goes out through
``sending.send_signed`` (public addresses only unless ``allow_private``, one deadline, a
capped answer) after the caller's session is closed: a slow receiver holds no database
connection.

Delivering is the worker's (``delivery.py``); an operator's retry only makes the delivery
due again in the database, so the worker's sweep finds it even if the task sent after the
commit is lost.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.auth import new_secret
from milepost_common.crypto import SecretBox
from milepost_common.domain import paging
from milepost_common.domain.audit import service as audit
from milepost_common.domain.base import count_for_org_locked
from milepost_common.domain.principals import Principal
from milepost_common.domain.webhooks import sending
from milepost_common.domain.webhooks.errors import (
    ALLOW_PRIVATE_SETTING,
    DeliveryNotDead,
    DeliveryNotFound,
    EndpointDisabled,
    WebhookLimitReached,
    WebhookNotFound,
    WebhookReceiverPrivate,
)
from milepost_common.domain.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from milepost_common.domain.webhooks.repository import (
    WebhookDeliveryRepository,
    WebhookEndpointRepository,
)
from milepost_common.domain.webhooks.schemas import (
    PING_EVENT_TYPE,
    DeliveryFilters,
    WebhookCreate,
    WebhookPingResult,
    WebhookUpdate,
)
from milepost_common.settings import WebhooksSettings

SECRET_PREFIX = "mpwh"  # noqa: S105 - a prefix, not a secret


def _check_receiver(url: str, *, allow_private: bool) -> None:
    """Refuse a receiver that is plainly private: a literal non-public address or a
    ``localhost`` name (no DNS lookup here; deliveries check every resolved address)."""
    host = urlsplit(url).hostname or ""
    if not allow_private and sending.is_private_literal(host):
        raise WebhookReceiverPrivate(
            details=[
                {
                    "loc": ["body", "url"],
                    "msg": "A private or loopback receiver, allowed only with"
                    f" {ALLOW_PRIVATE_SETTING}=true.",
                    "type": "value_error",
                }
            ]
        )


@dataclass(frozen=True, slots=True)
class EndpointWithSecret:
    endpoint: WebhookEndpoint
    secret: str  # plaintext: returned once, never stored unencrypted


async def create_webhook(
    session: AsyncSession,
    actor: Principal,
    data: WebhookCreate,
    box: SecretBox,
    *,
    allow_private: bool,
    limit: int,
) -> EndpointWithSecret:
    """Create an endpoint with a fresh secret (returned here only). Raises
    WebhookReceiverPrivate for a plainly private receiver unless ``allow_private``, and
    WebhookLimitReached when the organization already has ``limit`` endpoints (each event is
    delivered to every one). Audited."""
    _check_receiver(str(data.url), allow_private=allow_private)
    if await count_for_org_locked(session, WebhookEndpoint, actor.require_org()) >= limit:
        raise WebhookLimitReached.at(limit)
    secret = new_secret(SECRET_PREFIX)
    endpoint = WebhookEndpoint(
        org_id=actor.require_org(),
        url=str(data.url),
        secret_encrypted=box.encrypt(secret),
        event_types=sorted({t.value for t in data.event_types}),
    )
    session.add(endpoint)
    await session.flush()
    await audit.record(
        session,
        actor,
        "webhooks.create",
        target_type="webhook_endpoint",
        target_id=endpoint.id,
        diff={"url": receiver_address(endpoint.url), "event_types": endpoint.event_types},
    )
    return EndpointWithSecret(endpoint, secret)


async def get_webhook(
    session: AsyncSession, actor: Principal, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    """Raises WebhookNotFound when missing or of another organization."""
    endpoint = await WebhookEndpointRepository(session).get_for_org(
        actor.require_org(), endpoint_id
    )
    if endpoint is None:
        raise WebhookNotFound()
    return endpoint


async def list_webhooks(
    session: AsyncSession, actor: Principal, page: paging.PageRequest
) -> paging.PageResult[WebhookEndpoint]:
    return await WebhookEndpointRepository(session).page_for_org(actor.require_org(), page)


async def update_webhook(
    session: AsyncSession,
    actor: Principal,
    endpoint_id: uuid.UUID,
    data: WebhookUpdate,
    *,
    allow_private: bool,
) -> WebhookEndpoint:
    """Change the fields sent; enabling clears the reason it was disabled. Raises
    WebhookNotFound, or WebhookReceiverPrivate for a new URL as ``create_webhook``. Audited."""
    endpoint = await get_webhook(session, actor, endpoint_id)
    changes: dict[str, Any] = {}
    if data.url is not None:
        _check_receiver(str(data.url), allow_private=allow_private)
        changes["url"] = str(data.url)
    if data.event_types is not None:
        changes["event_types"] = sorted({t.value for t in data.event_types})
    if data.enabled is not None:
        changes["enabled"] = data.enabled
        if data.enabled:
            changes["disabled_reason"] = None
    diff = audit.changes({k: getattr(endpoint, k) for k in changes}, changes)
    if "url" in diff:
        diff["url"] = [receiver_address(url) for url in diff["url"]]
    if diff:
        for name, value in changes.items():
            setattr(endpoint, name, value)
        endpoint.updated_at = datetime.now(UTC)
        session.add(endpoint)
        await session.flush()
        await audit.record(
            session,
            actor,
            "webhooks.update",
            target_type="webhook_endpoint",
            target_id=endpoint.id,
            diff=diff,
        )
    return endpoint


async def delete_webhook(session: AsyncSession, actor: Principal, endpoint_id: uuid.UUID) -> None:
    """Deletes the endpoint and its deliveries. Raises WebhookNotFound. Audited."""
    endpoint = await get_webhook(session, actor, endpoint_id)
    await session.delete(endpoint)
    await session.flush()
    await audit.record(
        session,
        actor,
        "webhooks.delete",
        target_type="webhook_endpoint",
        target_id=endpoint_id,
        diff={"url": receiver_address(endpoint.url)},
    )


async def rotate_webhook_secret(
    session: AsyncSession, actor: Principal, endpoint_id: uuid.UUID, box: SecretBox
) -> EndpointWithSecret:
    """Replace the secret (the old one stops signing at once); the new one is returned
    here only. Audited."""
    endpoint = await get_webhook(session, actor, endpoint_id)
    secret = new_secret(SECRET_PREFIX)
    endpoint.secret_encrypted = box.encrypt(secret)
    endpoint.updated_at = datetime.now(UTC)
    session.add(endpoint)
    await session.flush()
    await audit.record(
        session,
        actor,
        "webhooks.rotate_secret",
        target_type="webhook_endpoint",
        target_id=endpoint.id,
    )
    return EndpointWithSecret(endpoint, secret)


async def list_webhook_deliveries(
    session: AsyncSession,
    actor: Principal,
    endpoint_id: uuid.UUID,
    page: paging.PageRequest,
    *,
    status: DeliveryStatus | None = None,
) -> paging.PageResult[WebhookDelivery]:
    """A keyset page of an endpoint's deliveries by ``created_at``. Raises WebhookNotFound."""
    endpoint = await get_webhook(session, actor, endpoint_id)
    return await WebhookDeliveryRepository(session).page_for_endpoint(endpoint, page, status=status)


@dataclass(frozen=True, slots=True)
class PingTarget:
    """What a test ping needs, loaded before any call goes out (no session is held then)."""

    endpoint_id: uuid.UUID
    org_id: uuid.UUID
    url: str = field(repr=False)  # its path and query may carry the receiver's token
    secret: str = field(repr=False)


async def get_ping_target(
    session: AsyncSession, actor: Principal, endpoint_id: uuid.UUID, box: SecretBox
) -> PingTarget:
    """The endpoint's address and plaintext secret. Raises WebhookNotFound."""
    endpoint = await get_webhook(session, actor, endpoint_id)
    return PingTarget(
        endpoint.id, endpoint.org_id, endpoint.url, box.decrypt(endpoint.secret_encrypted)
    )


async def send_test_ping(
    target: PingTarget,
    client: httpx.AsyncClient,
    *,
    allow_private: bool,
    limits: WebhooksSettings,
) -> WebhookPingResult:
    """POST a signed ``ping`` event to the endpoint now (within the attempt deadline) and
    report the receiver's answer; never raises for a receiver's failure."""
    event_id = uuid.uuid4()
    body = orjson.dumps(
        {
            "id": str(event_id),
            "type": PING_EVENT_TYPE,
            "created_at": datetime.now(UTC),
            "org_id": str(target.org_id),
            "data": {"webhook_id": str(target.endpoint_id)},
        },
        option=orjson.OPT_UTC_Z,
    )
    sent = await sending.send_signed(
        client,
        target.url,
        target.secret,
        event_id,
        body,
        allow_private=allow_private,
        timeout_s=limits.timeout_s,
        max_response_bytes=limits.max_response_bytes,
    )
    return WebhookPingResult(
        event_id=event_id,
        delivered=sent.succeeded,
        status_code=sent.status_code,
        error=sent.error if sent.status_code is None else None,
        duration_ms=round(sent.duration_ms, 1),
    )


async def get_delivery(
    session: AsyncSession, delivery_id: uuid.UUID, *, for_update: bool = False
) -> WebhookDelivery:
    """For operators: any organization's delivery. Raises DeliveryNotFound."""
    delivery = await WebhookDeliveryRepository(session).get(delivery_id, for_update=for_update)
    if delivery is None:
        raise DeliveryNotFound()
    return delivery


async def list_deliveries(
    session: AsyncSession, filters: DeliveryFilters
) -> paging.PageResult[WebhookDelivery]:
    """For operators: a keyset page of every organization's deliveries by creation time,
    filtered by organization, endpoint, status, type."""
    return await WebhookDeliveryRepository(session).page(filters)


@dataclass(frozen=True, slots=True)
class EndpointView:
    """An endpoint as operators see it: its receiver's address without the query (which
    may carry the receiver's own token)."""

    endpoint: WebhookEndpoint
    address: str


async def list_org_endpoints(session: AsyncSession, org_id: uuid.UUID) -> list[EndpointView]:
    """For operators: the organization's webhook endpoints, newest first."""
    endpoints = await WebhookEndpointRepository(session).list_for_org_newest_first(org_id)
    return [EndpointView(e, receiver_address(e.url)) for e in endpoints]


def receiver_address(url: str) -> str:
    """The receiver's scheme, host and port, its path and query as "…": how it is shown to
    operators and written in the audit log. Either may carry the receiver's own token (a
    Slack or Discord webhook's is in its path), which stays between the organization and
    its receiver; the audit log keeps what it is given for good."""
    parts = urlsplit(url)  # no credentials: refused at creation
    hidden = "/…" if parts.path.strip("/") or parts.query else "/"
    return urlunsplit((parts.scheme, parts.netloc, hidden, "", ""))


async def retry_delivery(
    session: AsyncSession, actor: Principal, delivery: WebhookDelivery
) -> WebhookDelivery:
    """For operators: make a dead delivery pending and due now, with a fresh attempt
    budget; the caller sends ``webhooks.deliver`` after the commit. Raises DeliveryNotDead
    or EndpointDisabled (409: nothing would be sent). Audited."""
    if delivery.status != DeliveryStatus.DEAD:
        raise DeliveryNotDead()
    endpoint = await WebhookEndpointRepository(session).get_for_org(
        delivery.org_id, delivery.endpoint_id
    )
    if endpoint is None or not endpoint.enabled:
        raise EndpointDisabled()
    delivery.status = DeliveryStatus.PENDING
    delivery.next_attempt_at = datetime.now(UTC)
    previous_attempts = delivery.attempts
    delivery.attempts = 0
    session.add(delivery)
    await session.flush()
    await audit.record(
        session,
        actor,
        "webhook_deliveries.retry",
        target_type="webhook_delivery",
        target_id=delivery.id,
        org_id=delivery.org_id,
        diff={"status": ["dead", "pending"], "attempts": [previous_attempts, 0]},
    )
    return delivery


async def delete_expired_deliveries(
    session: AsyncSession, org_id: uuid.UUID, cutoff: datetime, *, limit: int
) -> int:
    """Delete up to ``limit`` of the organization's ``succeeded`` and ``dead`` deliveries
    created before ``cutoff`` (their payloads hold positions and vehicle names); never a
    ``pending`` one, in flight or waiting for its next attempt. Retention: no principal;
    repeat while it returns ``limit``."""
    return await WebhookDeliveryRepository(session).delete_expired(org_id, cutoff, limit=limit)
