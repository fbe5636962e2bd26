"""Fixtures of the api's tests: one app (lifespan run once), a client per test whose
database joins the test's transaction, an organization with an owner, a manager and a
viewer, and tokens minted the way `POST /auth/token` mints them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_api.main import create_app
from milepost_api.settings import ApiSettings
from milepost_common.auth import Realm, TokenCodec
from milepost_common.db import Database
from milepost_common.domain.users.models import OrgRole, User
from milepost_common.testing.factories import make_organization, make_user
from milepost_common.testing.plugin import token_codec
from services.api.tests.api_support import Team


@pytest.fixture(scope="session")
def api_settings(settings_factory: Callable[..., ApiSettings]) -> ApiSettings:
    return settings_factory(
        ApiSettings,
        auth={"principal_cache_s": 0, "login_attempts_per_minute": 5},
        api={"rate_limit": "100000/minute"},
        webhooks={"allow_private": True},
    )


@pytest.fixture(scope="session")
async def api_app(api_settings: ApiSettings) -> AsyncIterator[FastAPI]:
    app = create_app(api_settings)
    async with LifespanManager(app):
        await app.state.db.dispose()
        yield app


@pytest.fixture
async def client(
    api_app: FastAPI, database: Database, redis: Redis
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the api app; the app's sessions join the test's transaction."""
    api_app.state.db = database
    transport = httpx.ASGITransport(app=api_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def team(session: AsyncSession) -> Team:
    org = await make_organization(session)
    return Team(
        org,
        await make_user(session, org, role=OrgRole.OWNER),
        await make_user(session, org, role=OrgRole.MANAGER),
        await make_user(session, org, role=OrgRole.VIEWER),
    )


@pytest.fixture
async def other_team(session: AsyncSession) -> Team:
    org = await make_organization(session)
    return Team(
        org,
        await make_user(session, org, role=OrgRole.OWNER),
        await make_user(session, org, role=OrgRole.MANAGER),
        await make_user(session, org, role=OrgRole.VIEWER),
    )


@pytest.fixture
def bearer(api_settings: ApiSettings) -> Callable[..., dict[str, str]]:
    """``Authorization`` headers with an access token for a user (or a given realm/ttl; an
    admin token is signed with admin's keys, which the api does not hold)."""
    codec = TokenCodec(api_settings.auth, Realm.API)

    def headers(user: User, *, realm: Realm = Realm.API, ttl_s: int = 900) -> dict[str, str]:
        token, _ = (codec if realm is Realm.API else token_codec()).issue(user.id, realm, ttl_s)
        return {"Authorization": f"Bearer {token}"}

    return headers


@pytest.fixture
def unresolved(monkeypatch: pytest.MonkeyPatch) -> None:
    """FastAPI's parameter and dependency resolution made to fail: a request answered
    anyway was answered directly."""

    async def unused(*args: object, **kwargs: object) -> None:
        raise AssertionError("resolved by FastAPI")

    monkeypatch.setattr("fastapi.routing.solve_dependencies", unused)
