"""Helpers shared by the admin's tests."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_admin.console.routing import ConsoleRoute
from milepost_admin.settings import AdminSettings
from milepost_common.auth import Realm, TokenCodec
from milepost_common.domain.audit.models import AuditEntry
from milepost_common.domain.ingest_batches.models import BatchStatus
from milepost_common.domain.users.models import OrgRole, PlatformRole, User
from milepost_common.domain.webhooks.models import DeliveryStatus
from milepost_common.testing.factories import (
    DEFAULT_PASSWORD,
    make_api_key,
    make_batch,
    make_device,
    make_operator,
    make_organization,
    make_user,
    make_webhook_delivery,
)
from milepost_common.testing.plugin import token_codec


def bearer(settings: AdminSettings, user: User, realm: Realm = Realm.ADMIN) -> dict[str, str]:
    """The header of a token minted the way ``POST /auth/token`` mints it (an api token, which
    admin cannot make, the way the api mints it)."""
    codec = TokenCodec(settings.auth, Realm.ADMIN) if realm is Realm.ADMIN else token_codec()
    token, _ = codec.issue(user.id, realm, 900)
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Staff:
    support: User
    operator: User
    superadmin: User
    support_auth: dict[str, str]
    operator_auth: dict[str, str]
    superadmin_auth: dict[str, str]


async def audit_actions(session: AsyncSession, **where: Any) -> list[str]:
    query = select(AuditEntry).order_by(col(AuditEntry.occurred_at), col(AuditEntry.id))
    for name, value in where.items():
        query = query.where(getattr(AuditEntry, name) == value)
    return [e.action for e in (await session.scalars(query)).all()]


async def audit_entries(session: AsyncSession, action: str) -> list[AuditEntry]:
    query = (
        select(AuditEntry)
        .where(AuditEntry.action == action)
        .order_by(col(AuditEntry.occurred_at), col(AuditEntry.id))
    )
    return list((await session.scalars(query)).all())


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


async def submit_login(
    client: httpx.AsyncClient, email: str, password: str, **fields: str
) -> httpx.Response:
    """The console's login form sent as a browser sends it: its CSRF token read from the
    form first; ``fields`` (``next``) added."""
    form = await client.get("/admin/login")
    data = {"email": email, "password": password, "csrf_token": csrf_of(form.text), **fields}
    return await client.post("/admin/login", data=data)


async def console_login(client: httpx.AsyncClient, user: User) -> None:
    """Log in to the console with the form (its CSRF token), as a browser does."""
    response = await submit_login(client, user.email, DEFAULT_PASSWORD, next="/admin/")
    assert response.status_code == 303, response.text


async def log_in(client: httpx.AsyncClient, user: User) -> str:
    """Log in through the form; returns the session's CSRF token."""
    await console_login(client, user)
    return csrf_of((await client.get("/admin/")).text)


@dataclass(frozen=True)
class Console:
    """A browser logged in to the console: its forms go with the session's CSRF token."""

    client: httpx.AsyncClient
    csrf: str

    async def submit(
        self, path: str, data: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """POST the form ``data`` (and ``files``, …) to ``path`` with the CSRF token."""
        return await self.client.post(
            path, data={**(data or {}), "csrf_token": self.csrf}, **kwargs
        )


async def console_as(client: httpx.AsyncClient, user: User) -> Console:
    """:func:`log_in` as ``user``; the console it leaves ``client`` in."""
    return Console(client, await log_in(client, user))


async def one_of_everything(session: AsyncSession) -> dict[str, uuid.UUID]:
    """A row of each kind admin's paths name, by the path parameter that names it, for the
    fuzzers: an organization (with an owner), a viewer, a support operator, a device, a key,
    a failed batch and a dead delivery. Never the caller's own id: deactivating it would end
    the run's authority."""
    org = await make_organization(session)
    await make_user(session, org, role=OrgRole.OWNER)
    viewer = await make_user(session, org, role=OrgRole.VIEWER)
    support = await make_operator(session, role=PlatformRole.SUPPORT)
    device = await make_device(session, org)
    key = await make_api_key(session, org)
    five_minutes_ago = datetime.now(UTC) - timedelta(minutes=5)
    batch = await make_batch(session, org.id, five_minutes_ago, status=BatchStatus.FAILED)
    delivery = await make_webhook_delivery(session, org, DeliveryStatus.DEAD)
    return {
        "org_id": org.id,
        "user_id": viewer.id,
        "operator_id": support.id,
        "device_id": device.id,
        "key_id": key.api_key.id,
        "batch_id": batch.id,
        "delivery_id": delivery.id,
    }


# Console forms that no session authorizes: the login (its CSRF token is in a cookie of its
# own) and the account pages (the link's token is the authority).
NO_SESSION_FORMS = frozenset({"/admin/login", "/admin/invitation", "/admin/password-reset"})


def console_routes(app: FastAPI) -> Iterator[tuple[str, str, ConsoleRoute]]:
    """Every console route of the app by method: (method, full path template, route)."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, ConsoleRoute):
            for method in sorted(route.methods):
                yield method, context.path, route


def json_api_changes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """Every operation of the JSON API that is not a read: (method, full path template)."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path.startswith("/admin/v1/"):
            for method in sorted(route.methods - {"GET", "HEAD"}):
                yield method, context.path


def filled(path: str, ids: Mapping[str, object]) -> str:
    """A route's path template with the ids of :func:`one_of_everything`'s rows."""
    return re.sub(r"{(\w+)[^}]*}", lambda m: str(ids[m.group(1)]), path)
