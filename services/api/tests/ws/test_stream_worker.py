"""End to end: a batch processed by a real worker (``milepost-worker``, prefork, a separate
process) raises an overspeed alert, and a client of the api's live stream receives it."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.dialects.postgresql import insert
from websockets.asyncio.client import ClientConnection, connect

from milepost_api.main import create_app
from milepost_api.settings import ApiSettings
from milepost_common import tasks
from milepost_common.auth import Realm, TokenCodec
from milepost_common.db import create_database, unit_of_work
from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts.models import AlertType
from milepost_common.domain.devices import tenure as device_tenure
from milepost_common.domain.ingest_batches.models import BatchSource, BatchStatus, IngestBatch
from milepost_common.domain.positions.models import Position
from milepost_common.domain.principals import SYSTEM
from milepost_common.settings import DbSettings
from milepost_common.tasks import Publisher
from milepost_common.testing.factories import make_device, make_organization, make_user
from services.api.tests.api_support import serving

pytestmark = pytest.mark.slow


@pytest.fixture
def worker(
    committed_database: str,
    settings_factory: Callable[..., ApiSettings],
    tmp_path: Path,
) -> Iterator[subprocess.Popen[bytes]]:
    settings = settings_factory(ApiSettings)
    binary = shutil.which("milepost-worker")
    assert binary, "milepost-worker is installed with the workspace"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MILEPOST_")},
        "MILEPOST_ENV": "test",
        "MILEPOST_DB__URL": committed_database,
        "MILEPOST_DB__POOL_SIZE": "2",
        "MILEPOST_REDIS__URL": settings.redis.url,
        "MILEPOST_REDIS__CACHE_DB": str(settings.redis.cache_db),
        "MILEPOST_WORKER__METRICS_PORT": "0",
    }
    with (tmp_path / "worker.log").open("wb") as log:
        process = subprocess.Popen(
            [binary, "--concurrency", "1", "--loglevel", "INFO", "--hostname", "apitest@%h"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.fixture
async def live_api(
    committed_database: str, settings_factory: Callable[..., ApiSettings]
) -> AsyncIterator[tuple[str, ApiSettings]]:
    settings = settings_factory(ApiSettings, db={"url": committed_database, "pool_size": 2})
    app = create_app(settings)
    async with LifespanManager(app), serving(app) as address:
        yield f"ws://{address}/api/v1/stream", settings


async def test_an_alert_from_a_real_worker_reaches_the_stream(
    worker: subprocess.Popen[bytes],
    live_api: tuple[str, ApiSettings],
    tmp_path: Path,
) -> None:
    address, settings = live_api
    db = create_database(DbSettings(url=settings.db.url, pool_size=1))
    try:
        async with unit_of_work(db) as session:
            org = await make_organization(session)
            viewer = await make_user(session, org)
            device = await make_device(session, org)
            session.add(
                AlertRule(
                    org_id=org.id,
                    name="Speeding",
                    type=AlertType.OVERSPEED,
                    params={"limit_kmh": 50, "multiplier": 1.0, "min_duration_s": 0},
                )
            )
            now = datetime.now(UTC).replace(microsecond=0)
            batch = IngestBatch(
                org_id=org.id,
                source=BatchSource.JSON,
                status=BatchStatus.QUEUED,
                accepted=12,
                device_ids=[str(device.id)],
                queued_at=now,
            )
            session.add(batch)
            await session.flush()
            await session.execute(
                insert(Position).values(
                    [
                        {
                            "device_id": device.id,
                            "org_id": org.id,
                            "fix_time": now - timedelta(seconds=10 * (12 - i)),
                            "lat": 52.5,
                            "lon": 13.4 + i * 0.004,  # ~270 m per 10 s: about 100 km/h
                            "speed": 100.0,
                            "attributes": {},
                            "batch_id": batch.id,
                        }
                        for i in range(12)
                    ]
                )
            )
        token, _ = TokenCodec(settings.auth, Realm.API).issue(viewer.id, Realm.API, 600)
        async with connect(address) as ws:
            await subscribed_to_all(ws, token)
            await process(settings, batch.id)

            async def first_alert() -> dict[str, object]:
                while True:
                    message = orjson.loads(await ws.recv())
                    if message["type"] == "alert":
                        return dict(message)

            try:
                alert = await asyncio.wait_for(first_alert(), 90)
            except TimeoutError:
                log = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"no alert on the stream; worker log:\n{log}") from None
        assert alert["data"]["type"] == "overspeed"  # type: ignore[index]
        assert uuid.UUID(str(alert["data"]["vehicle_id"])) == device.id  # type: ignore[index]
    finally:
        await db.dispose()


async def test_after_a_transfer_only_the_new_organization_streams_the_vehicle(
    worker: subprocess.Popen[bytes],
    live_api: tuple[str, ApiSettings],
    tmp_path: Path,
) -> None:
    """Audited: the worker publishes on the channel of the organization that holds the
    device now, so the old organization's open stream gets nothing of the new tenure."""
    address, settings = live_api
    db = create_database(DbSettings(url=settings.db.url, pool_size=1))
    try:
        async with unit_of_work(db) as session:
            old, new = await make_organization(session), await make_organization(session)
            old_viewer, new_viewer = await make_user(session, old), await make_user(session, new)
            device = await make_device(session, old)
            device = await device_tenure.transfer_device(session, SYSTEM, device, new)
            start = device.assigned_at
            assert start is not None
        await asyncio.sleep(1.5)  # the fixes below are after the transfer, and in the past
        async with unit_of_work(db) as session:
            batch = IngestBatch(
                org_id=new.id,
                source=BatchSource.JSON,
                status=BatchStatus.QUEUED,
                accepted=3,
                device_ids=[str(device.id)],
                queued_at=datetime.now(UTC),
            )
            session.add(batch)
            await session.flush()
            await session.execute(
                insert(Position).values(
                    [
                        {
                            "device_id": device.id,
                            "org_id": new.id,
                            "fix_time": start + timedelta(seconds=0.4 * (i + 1)),
                            "lat": 52.5,
                            "lon": 13.4 + i * 0.001,
                            "attributes": {},
                            "batch_id": batch.id,
                        }
                        for i in range(3)
                    ]
                )
            )
        codec = TokenCodec(settings.auth, Realm.API)
        async with connect(address) as was, connect(address) as now:
            for ws, user in ((was, old_viewer), (now, new_viewer)):
                await subscribed_to_all(ws, codec.issue(user.id, Realm.API, 600)[0])
            await process(settings, batch.id)

            try:
                position = await asyncio.wait_for(next_event(now), 90)
            except TimeoutError:
                log = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"no position on the stream; worker log:\n{log}") from None
            assert position["data"]["vehicle_name"] == device.name  # type: ignore[index]
            # Published in one pipeline with the new organization's: none came to the old.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(next_event(was), 2)
    finally:
        await db.dispose()


async def next_event(ws: ClientConnection) -> dict[str, object]:
    while True:
        message = orjson.loads(await ws.recv())
        if message["type"] in ("position", "alert"):
            return dict(message)


async def subscribed_to_all(ws: ClientConnection, token: str) -> None:
    await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
    assert orjson.loads(await ws.recv()) == {"type": "ready"}
    await ws.send('{"type": "subscribe", "vehicle_ids": "all"}')
    assert orjson.loads(await ws.recv())["type"] == "subscribed"


async def process(settings: ApiSettings, batch_id: uuid.UUID) -> None:
    """Send the batch to the real worker, as ingest does after its commit."""
    publisher = Publisher(settings.redis, settings.celery)
    try:
        await asyncio.to_thread(
            publisher.send_blocking, tasks.INGEST_BATCHES_PROCESS, str(batch_id)
        )
    finally:
        publisher.close()
