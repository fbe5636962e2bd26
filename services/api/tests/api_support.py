"""Helpers the api's tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import orjson
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select
from starlette.types import ASGIApp

from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts.models import AlertType
from milepost_common.domain.audit.models import AuditEntry
from milepost_common.domain.devices.models import Device
from milepost_common.domain.geofences.models import Geofence
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.trips.models import Trip
from milepost_common.domain.users.models import User
from milepost_common.domain.webhooks.models import WebhookEndpoint
from milepost_common.testing.factories import (
    make_alert,
    make_alert_rule,
    make_api_key,
    make_device,
    make_trip,
)
from milepost_common.web.serve import PROTOCOLS

Bearer = Callable[..., dict[str, str]]


@dataclass
class Team:
    org: Organization
    owner: User
    manager: User
    viewer: User


async def one_of_everything(
    session: AsyncSession, org: Organization, member: User
) -> dict[str, uuid.UUID]:
    """A vehicle, trip, alert, geofence, rule, webhook and API key of ``org``, by the names
    of the path parameters that take their ids (``user_id`` is ``member``'s)."""
    device = await make_device(session, org)
    now = datetime.now(UTC)
    geofence = Geofence(
        org_id=org.id,
        name="Depot",
        geometry={"type": "Point", "coordinates": [13.4, 52.5]},
        radius_m=100,
    )
    idle = {"name": "Idle", "params": {"min_duration_s": 60}}
    rule = await make_alert_rule(session, org.id, AlertType.IDLE, **idle)
    trip = await make_trip(session, device, now - timedelta(hours=1), now)
    alert = await make_alert(session, device, now, rule)
    webhook = WebhookEndpoint(org_id=org.id, url="https://example.com/h", secret_encrypted="x")
    session.add_all([geofence, webhook])
    await session.flush()
    key = await make_api_key(session, org)
    return {
        "vehicle_id": device.id,
        "trip_id": trip.id,
        "alert_id": alert.id,
        "geofence_id": geofence.id,
        "rule_id": rule.id,
        "webhook_id": webhook.id,
        "user_id": member.id,
        "key_id": key.api_key.id,
    }


def error_code(response: httpx.Response) -> Any:
    return response.json()["error"]["code"]


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in this event loop; yields the
    base URL. Real sockets: for WebSockets, webhooks and back-pressure."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, lifespan="off", **PROTOCOLS
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        done, _ = await asyncio.wait([task], timeout=5)
        if not done:
            server.force_exit = True
            task.cancel()
            await asyncio.wait([task], timeout=5)


async def trip(
    session: AsyncSession, device: Device, start: datetime, minutes: int, km: float, vmax: float
) -> Trip:
    """A trip of ``minutes`` and ``km`` from ``start``, its top speed ``vmax``."""
    numbers = {"distance_m": km * 1000, "duration_s": minutes * 60, "max_speed": vmax}
    end = start + timedelta(minutes=minutes)
    return await make_trip(session, device, start, end, avg_speed=km / (minutes / 60), **numbers)


async def rule_for(session: AsyncSession, team: Team) -> AlertRule:
    return await make_alert_rule(session, team.org.id, name="Speed", params={"multiplier": 1.0})


async def actions(session: AsyncSession) -> set[str]:
    return set((await session.scalars(select(AuditEntry.action))).all())


Answer = tuple[int, bytes, str | None]


async def answers_to(
    client: httpx.AsyncClient, requests: list[tuple[str, dict[str, str]]]
) -> list[Answer]:
    """Each GET's status, body and ETag, in order."""
    out = []
    for url, headers in requests:
        response = await client.get(url, headers=headers)
        out.append((response.status_code, response.content, response.headers.get("etag")))
    return out


def assert_same_answers(direct: list[Answer], resolved: list[Answer]) -> None:
    """A route's direct handler answered exactly what FastAPI's resolution answers: the same
    statuses, each 200 byte for byte with its ETag, each error the same envelope but for
    the request's own trace id."""
    assert [status for status, _, _ in direct] == [status for status, _, _ in resolved]
    for one, other in zip(direct, resolved, strict=True):
        if one[0] == 200:
            assert one == other
        else:
            assert _untraced(one[1]) == _untraced(other[1])


def _untraced(body: bytes) -> object:
    error = orjson.loads(body)["error"]
    return {**error, "trace_id": None}


async def vehicles_that_drove(
    session: AsyncSession, org_id: uuid.UUID, *, vehicles: int, days: int, first: date
) -> None:
    """``vehicles`` vehicles of the organization with a trip a day for ``days`` days from
    ``first``, written by SQL: thousands of trips at once."""
    await session.execute(
        text(
            "INSERT INTO devices (id, org_id, unique_id, name, disabled)"
            " SELECT gen_random_uuid(), :org_id, 'fleet-' || g, 'Vehicle ' || g, false"
            " FROM generate_series(1, :vehicles) g"
        ),
        {"org_id": org_id, "vehicles": vehicles},
    )
    await session.execute(
        text(
            "INSERT INTO trips (id, org_id, device_id, start_time, end_time, start_lat,"
            " start_lon, end_lat, end_lon, distance_m, duration_s, avg_speed, max_speed)"
            " SELECT gen_random_uuid(), d.org_id, d.id, s, s + interval '1 hour', 52.5, 13.4,"
            " 52.6, 13.5, 41234.56 + n, 3600.4, 41.23, 97.06"
            " FROM devices d, generate_series(0, :days - 1) n, LATERAL (SELECT"
            " CAST(:first AS timestamptz) + n * interval '1 day' + interval '8 hours') t(s)"
            " WHERE d.org_id = :org_id"
        ),
        {"org_id": org_id, "days": days, "first": first},
    )
