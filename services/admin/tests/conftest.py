"""Fixtures of the admin's tests: one app (lifespan run once), a client per test whose
database joins the test's transaction, operators of each platform role and their tokens."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_admin.main import create_app
from milepost_admin.settings import AdminSettings
from milepost_common.db import Database
from milepost_common.domain.users.models import PlatformRole
from milepost_common.testing.factories import make_operator

# pytest's import mode leaves this directory off sys.path; the shared helpers live here.
sys.path.insert(0, str(Path(__file__).parent))

from admin_support import Console, Staff, bearer, console_as


@pytest.fixture(scope="session")
def admin_settings(settings_factory: Callable[..., AdminSettings]) -> AdminSettings:
    return settings_factory(
        AdminSettings,
        auth={"principal_cache_s": 0, "login_attempts_per_minute": 3},
        admin={"rate_limit": "100000/minute", "public_url": "https://fleet.example"},
    )


@pytest.fixture(scope="session")
async def admin_app(admin_settings: AdminSettings) -> AsyncIterator[FastAPI]:
    app = create_app(admin_settings)
    async with LifespanManager(app):
        await app.state.db.dispose()
        yield app


@pytest.fixture
async def client(
    admin_app: FastAPI, database: Database, redis: Redis
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the admin app; the app's sessions join the test's transaction."""
    admin_app.state.db = database
    transport = httpx.ASGITransport(app=admin_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def staff(session: AsyncSession, admin_settings: AdminSettings) -> Staff:
    support = await make_operator(session, role=PlatformRole.SUPPORT)
    operator = await make_operator(session, role=PlatformRole.OPERATOR)
    superadmin = await make_operator(session, role=PlatformRole.SUPERADMIN)
    return Staff(
        support,
        operator,
        superadmin,
        bearer(admin_settings, support),
        bearer(admin_settings, operator),
        bearer(admin_settings, superadmin),
    )


@pytest.fixture
async def operator_console(client: httpx.AsyncClient, staff: Staff) -> Console:
    """The console, logged in as the platform operator of ``staff``."""
    return await console_as(client, staff.operator)
