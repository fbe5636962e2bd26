"""The ingest app on the test database, an organization with a device and an API key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.db import Database
from milepost_common.domain.api_keys.service import IssuedKey
from milepost_common.domain.devices.models import Device
from milepost_common.domain.organizations.models import Organization
from milepost_common.testing.factories import make_api_key, make_device, make_organization
from milepost_common.testing.plugin import app_client
from milepost_ingest.main import create_app
from milepost_ingest.settings import IngestSettings

SettingsFactory = Callable[..., IngestSettings]
Item = dict[str, Any]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def make_fix(
    device: Device | str, fix_time: datetime | str | None = None, **fields: Any
) -> dict[str, Any]:
    """One valid batch item (a few minutes old unless told)."""
    moment = fix_time or datetime.now(UTC) - timedelta(minutes=5)
    return {
        "device_id": device if isinstance(device, str) else device.unique_id,
        "fix_time": moment if isinstance(moment, str) else iso(moment),
        "lat": 52.52,
        "lon": 13.405,
        "speed": 42.0,
        "course": 90.0,
        "altitude": 34.0,
        "accuracy": 5.0,
        "attributes": {"ignition": True},
        **fields,
    }


def make_fixes(device: Device, count: int, start: datetime | None = None) -> list[Item]:
    """``count`` valid items one second apart."""
    first = start or datetime.now(UTC) - timedelta(hours=1)
    return [make_fix(device, first + timedelta(seconds=i)) for i in range(count)]


@pytest.fixture
def fix() -> Callable[..., Item]:
    """``fix(device_or_unique_id, fix_time=None, **fields)``: one valid batch item."""
    return make_fix


@pytest.fixture
def fixes() -> Callable[..., list[Item]]:
    """``fixes(device, count, start=None)``: valid items one second apart."""
    return make_fixes


@pytest.fixture
def make_settings(settings_factory: SettingsFactory) -> SettingsFactory:
    """Ingest settings for tests: keys re-checked on every request, OsmAnd fixes unbatched,
    the test process's garbage collector left alone."""

    def make(**overrides: Any) -> IngestSettings:
        auth = {"principal_cache_s": 0, **overrides.pop("auth", {})}
        ingest = {"osmand_linger_s": 0.0, "tune_gc": False, **overrides.pop("ingest", {})}
        return settings_factory(IngestSettings, auth=auth, ingest=ingest, **overrides)

    return make


@pytest.fixture
def ingest_settings(make_settings: SettingsFactory) -> IngestSettings:
    return make_settings()


@pytest.fixture
def app(ingest_settings: IngestSettings) -> FastAPI:
    return create_app(ingest_settings)


@pytest.fixture
async def client(
    app: FastAPI, database: Database, redis: Redis
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app, database) as c:
        yield c


@pytest.fixture
async def org(session: AsyncSession) -> Organization:
    return await make_organization(session)


@pytest.fixture
async def device(session: AsyncSession, org: Organization) -> Device:
    return await make_device(session, org)


@pytest.fixture
async def api_key(session: AsyncSession, org: Organization) -> IssuedKey:
    return await make_api_key(session, org)


@pytest.fixture
def auth(api_key: IssuedKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key.secret}"}
