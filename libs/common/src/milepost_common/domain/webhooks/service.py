"""Webhook endpoints of an organization: CRUD, secret rotation, a signed test ping, and
the list of deliveries.

The signing secret is generated here, encrypted at rest with the SecretBox, and returned in
plaintext only on creation and on rotation. The test ping connects only to public
addresses unless ``allow_private`` (checked on the resolved address at connect time, so a
DNS answer cannot redirect it to the internal network).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.auth import new_secret
from milepost_common.crypto import SecretBox
from milepost_common.domain import paging
from milepost_common.domain.audit import service as audit
from milepost_common.domain.base import get_by_id
from milepost_common.domain.principals import Principal
from milepost_common.domain.webhooks import signing
from milepost_common.domain.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from milepost_common.domain.webhooks.schemas import (
    PING_EVENT_TYPE,
    WebhookCreate,
    WebhookPingResult,
    WebhookUpdate,
)
from milepost_common.errors import NotFound

SECRET_PREFIX = "mpwh"  # noqa: S105 - a prefix, not a secret
PING_TIMEOUT_S = 10.0


class WebhookNotFound(NotFound):
    default_message = "Webhook not found."


class AddressRefused(Exception):
    """The receiver resolves to a private, loopback or otherwise non-public address."""


@dataclass(frozen=True, slots=True)
class EndpointWithSecret:
    endpoint: WebhookEndpoint
    secret: str  # plaintext: returned once, never stored unencrypted


async def create_webhook(
    session: AsyncSession, actor: Principal, data: WebhookCreate, box: SecretBox
) -> EndpointWithSecret:
    """Create an endpoint with a fresh secret (returned here only). Audited."""
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
        diff={"url": endpoint.url, "event_types": endpoint.event_types},
    )
    return EndpointWithSecret(endpoint, secret)


async def get_webhook(
    session: AsyncSession, actor: Principal, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    """Raises WebhookNotFound when missing or of another organization."""
    return await get_by_id(
        session, WebhookEndpoint, endpoint_id, WebhookNotFound, org_id=actor.require_org()
    )


async def list_webhooks(
    session: AsyncSession, actor: Principal, page: paging.PageRequest
) -> paging.PageResult[WebhookEndpoint]:
    return await paging.org_page(session, WebhookEndpoint, actor.require_org(), page)


async def update_webhook(
    session: AsyncSession, actor: Principal, endpoint_id: uuid.UUID, data: WebhookUpdate
) -> WebhookEndpoint:
    """Change the fields sent; enabling clears the reason it was disabled. Audited."""
    endpoint = await get_webhook(session, actor, endpoint_id)
    changes: dict[str, Any] = {}
    if data.url is not None:
        changes["url"] = str(data.url)
    if data.event_types is not None:
        changes["event_types"] = sorted({t.value for t in data.event_types})
    if data.enabled is not None:
        changes["enabled"] = data.enabled
        if data.enabled:
            changes["disabled_reason"] = None
    diff = audit.changes({k: getattr(endpoint, k) for k in changes}, changes)
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
        diff={"url": endpoint.url},
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
    query = select(WebhookDelivery).where(
        WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.org_id == endpoint.org_id
    )
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    descending = page.sort is not None and page.sort.descending
    query = paging.keyset(
        query,
        col(WebhookDelivery.created_at),
        col(WebhookDelivery.id),
        limit=page.limit,
        cursor=page.cursor,
        descending=descending,
    )
    rows = list((await session.scalars(query)).all())
    return paging.page_of(rows, page.limit, lambda d: (d.created_at, d.id))


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve_receiver(host: str, port: int, *, allow_private: bool) -> str:
    """The address to connect to; raises AddressRefused for non-public ones (unless allowed)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise AddressRefused(f"{host} does not resolve")
    if not allow_private:
        refused = [a for a in addresses if not is_public_address(a)]
        if refused:
            raise AddressRefused(f"{host} resolves to a non-public address")
    return addresses[0]


async def post_signed(
    client: httpx.AsyncClient,
    url: str,
    secret: str,
    event_id: uuid.UUID,
    body: bytes,
    *,
    allow_private: bool,
    timeout_s: float = PING_TIMEOUT_S,
) -> httpx.Response:
    """POST ``body`` signed, to the address resolved and checked here (TLS still verifies
    the certificate against the URL's host name). Raises AddressRefused or httpx errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = await resolve_receiver(host, port, allow_private=allow_private)
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    headers = {
        "Host": parts.netloc,
        "Content-Type": "application/json",
        "User-Agent": "Milepost-Webhooks/1.0",
        signing.EVENT_ID_HEADER: str(event_id),
        signing.SIGNATURE_HEADER: signing.sign(secret, body),
    }
    return await client.post(
        target,
        content=body,
        headers=headers,
        timeout=timeout_s,
        follow_redirects=False,
        extensions={"sni_hostname": host},
    )


async def send_test_ping(
    session: AsyncSession,
    actor: Principal,
    endpoint_id: uuid.UUID,
    box: SecretBox,
    client: httpx.AsyncClient,
    *,
    allow_private: bool,
) -> WebhookPingResult:
    """POST a signed ``ping`` event to the endpoint now and report the receiver's answer
    (never raises for a receiver's failure). Raises WebhookNotFound."""
    endpoint = await get_webhook(session, actor, endpoint_id)
    event_id = uuid.uuid4()
    body = orjson.dumps(
        {
            "id": str(event_id),
            "type": PING_EVENT_TYPE,
            "created_at": datetime.now(UTC),
            "org_id": str(endpoint.org_id),
            "data": {"webhook_id": str(endpoint.id)},
        },
        option=orjson.OPT_UTC_Z,
    )
    started = time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    try:
        response = await post_signed(
            client,
            endpoint.url,
            box.decrypt(endpoint.secret_encrypted),
            event_id,
            body,
            allow_private=allow_private,
        )
        status_code = response.status_code
    except AddressRefused as exc:
        error = f"refused: {exc}"
    except (httpx.HTTPError, OSError) as exc:
        error = f"{type(exc).__name__}: could not deliver"
    elapsed = round((time.perf_counter() - started) * 1000, 1)
    return WebhookPingResult(
        event_id=event_id,
        delivered=status_code is not None and 200 <= status_code < 300,
        status_code=status_code,
        error=error if status_code is None else None,
        duration_ms=elapsed,
    )
