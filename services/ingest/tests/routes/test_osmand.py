"""``/ingest/osmand/{api_key}``: the protocol's example requests through the whole path, the
answers a phone relies on, coalesced writes, and the key kept out of every log line."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.db import Database
from milepost_common.domain.api_keys.service import IssuedKey
from milepost_common.domain.ingest_batches.models import IngestBatch
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.positions.models import Position
from milepost_common.testing.factories import make_device
from milepost_common.testing.plugin import app_client
from milepost_common.web.middleware import log as access_log
from milepost_ingest.main import create_app
from milepost_ingest.settings import IngestSettings

TRACCAR_JSON = (
    '{"location":{"timestamp":"2025-06-15T13:45:12.862Z","coords":{"latitude":37.4219983,'
    '"longitude":-122.084,"accuracy":5,"speed":0,"heading":-1,"altitude":5},"is_moving":false,'
    '"odometer":0,"event":"motionchange","battery":{"level":1,"is_charging":false},'
    '"activity":{"type":"still"},"extras":{}},"device_id":"48241179"}'
)
EXAMPLES = [
    (
        "902064",
        "lat=42.06288&lon=-88.23412&timestamp=2016-01-27T18%3A55%3A47Z&hdop=6.0"
        "&altitude=224.0&speed=0.0",
        {
            "fix_time": "2016-01-27T18:55:47+00:00",
            "lat": 42.06288,
            "lon": -88.23412,
            "speed": 0.0,
            "course": None,
            "altitude": 224.0,
            "accuracy": None,
            "attributes": {"hdop": 6.0},
        },
    ),
    (
        "902064",
        "lat=42.06288&lon=-88.23412&timestamp=1442068686579&hdop=6.0&altitude=224.0&speed=0.0",
        {"fix_time": "2015-09-12T14:38:06.579000+00:00", "speed": 0.0},
    ),
    (
        "123456",
        "timestamp=1377177267&location=60.0,30.0",
        {"fix_time": "2013-08-22T13:14:27+00:00", "lat": 60.0, "lon": 30.0, "attributes": {}},
    ),
    (
        "123456789012345",
        "timestamp=1504763810&lat=40.7232948571&lon=-74.0061408571&bearing=7.19889788244"
        "&speed=40&ignition=true&rpm=933&fuel=24",
        {
            "fix_time": "2017-09-07T05:56:50+00:00",
            "speed": 74.08,
            "course": 7.19889788244,
            "attributes": {"ignition": True, "rpm": 933, "fuel": 24},
        },
    ),
]


def osmand_url(key: IssuedKey, query: str = "", *, slash: bool = False) -> str:
    return f"/ingest/osmand/{key.secret}{'/' if slash else ''}{'?' + query if query else ''}"


async def batches_of(session: AsyncSession, org: Organization) -> list[IngestBatch]:
    query = (
        select(IngestBatch)
        .where(col(IngestBatch.org_id) == org.id)
        .order_by(col(IngestBatch.received_at))
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(query)).scalars().all())


def now_query(unique_id: str, **extra: Any) -> str:
    moment = datetime.now(UTC) - timedelta(seconds=30)
    params = {"id": unique_id, "lat": "52.5", "lon": "13.4", "timestamp": int(moment.timestamp())}
    params.update(extra)
    return "&".join(f"{k}={v}" for k, v in params.items())


class TestIssueExamples:
    @pytest.mark.parametrize(("unique_id", "query", "expected"), EXAMPLES)
    @pytest.mark.parametrize("slash", [False, True])
    async def test_example_is_answered_200_and_recorded_with_exact_values(
        self,
        client: httpx.AsyncClient,
        api_key: IssuedKey,
        session: AsyncSession,
        org: Organization,
        unique_id: str,
        query: str,
        expected: dict[str, Any],
        slash: bool,
    ) -> None:
        await make_device(session, org, unique_id=unique_id)
        response = await client.get(osmand_url(api_key, f"id={unique_id}&{query}", slash=slash))
        assert response.status_code == 200
        assert response.content == b""
        [batch] = await batches_of(session, org)
        assert (batch.source, batch.rejected) == ("osmand", 1)  # old: fix_time_too_old
        [kept] = batch.rejected_items
        assert kept["code"] == "fix_time_too_old"
        assert kept["item"]["device_id"] == unique_id
        assert {name: kept["item"][name] for name in expected} == expected

    async def test_traccar_client_json_example(
        self,
        client: httpx.AsyncClient,
        api_key: IssuedKey,
        session: AsyncSession,
        org: Organization,
    ) -> None:
        await make_device(session, org, unique_id="48241179")
        response = await client.post(
            osmand_url(api_key),
            content=TRACCAR_JSON,
            headers={"Content-Type": "application/json"},
        )
        assert (response.status_code, response.content) == (200, b"")
        [batch] = await batches_of(session, org)
        [kept] = batch.rejected_items
        assert kept["code"] == "fix_time_too_old"
        assert kept["item"] == {
            "device_id": "48241179",
            "fix_time": "2025-06-15T13:45:12.862000+00:00",
            "lat": 37.4219983,
            "lon": -122.084,
            "speed": 0.0,
            "course": None,
            "altitude": 5,
            "accuracy": 5,
            "attributes": {
                "motion": False,
                "odometer": 0,
                "event": "motionchange",
                "activity": "still",
                "battery": 100,
                "charge": False,
            },
        }


class TestAnswers:
    async def test_current_fix_is_stored_with_converted_units(
        self,
        client: httpx.AsyncClient,
        api_key: IssuedKey,
        session: AsyncSession,
        org: Organization,
    ) -> None:
        device = await make_device(session, org)
        query = now_query(device.unique_id, speed="10", bearing="45", batt="80", charge="true")
        assert (await client.get(osmand_url(api_key, query))).status_code == 200
        position = (
            await session.execute(select(Position).where(col(Position.device_id) == device.id))
        ).scalar_one()
        assert (position.speed, position.course) == (18.52, 45.0)
        assert position.attributes == {"battery": 80.0, "charge": True}
        [batch] = await batches_of(session, org)
        assert (batch.accepted, batch.status) == (1, "queued")

    @pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
    async def test_any_method_with_a_query_string(
        self,
        client: httpx.AsyncClient,
        api_key: IssuedKey,
        session: AsyncSession,
        org: Organization,
        method: str,
    ) -> None:
        device = await make_device(session, org)
        response = await client.request(method, osmand_url(api_key, now_query(device.unique_id)))
        assert response.status_code == 200

    async def test_form_body(
        self,
        client: httpx.AsyncClient,
        api_key: IssuedKey,
        session: AsyncSession,
        org: Organization,
    ) -> None:
        device = await make_device(session, org)
        response = await client.post(
            osmand_url(api_key, slash=True),
            content=now_query(device.unique_id),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200
        [batch] = await batches_of(session, org)
        assert batch.accepted == 1

    async def test_missing_timestamp_is_the_receive_time(
        self,
        client: httpx.AsyncClient,
        api_key: IssuedKey,
        session: AsyncSession,
        org: Organization,
    ) -> None:
        device = await make_device(session, org)
        before = datetime.now(UTC)
        await client.get(osmand_url(api_key, f"id={device.unique_id}&lat=1.5&lon=2.5"))
        stored = await session.scalar(
            select(Position.fix_time).where(col(Position.device_id) == device.id)
        )
        assert stored is not None
        assert before <= stored <= datetime.now(UTC)

    async def test_rejected_and_duplicate_fixes_of_a_known_device_are_200(
        self,
        client: httpx.AsyncClient,
        api_key: IssuedKey,
        session: AsyncSession,
        org: Organization,
    ) -> None:
        device = await make_device(session, org)
        query = now_query(device.unique_id)
        bad = f"id={device.unique_id}&lat=0&lon=0"
        statuses = [
            (await client.get(osmand_url(api_key, q))).status_code for q in (query, query, bad)
        ]
        assert statuses == [200, 200, 200]
        batches = await batches_of(session, org)
        assert [(b.accepted, b.duplicates, b.rejected) for b in batches] == [
            (1, 0, 0),
            (0, 1, 0),
            (0, 0, 1),
        ]
        assert batches[2].errors[0]["code"] == "invalid_coordinates"

    async def test_a_number_too_long_for_a_double_is_a_rejected_fix_not_a_500(
        self,
        client: httpx.AsyncClient,
        api_key: IssuedKey,
        session: AsyncSession,
        org: Organization,
    ) -> None:
        device = await make_device(session, org)
        response = await client.get(osmand_url(api_key, now_query(device.unique_id, lat="9" * 400)))
        assert (response.status_code, response.content) == (200, b"")
        [batch] = await batches_of(session, org)
        assert [error["code"] for error in batch.errors] == ["invalid_field"]

    async def test_unknown_device_is_400_and_not_recorded(
        self,
        client: httpx.AsyncClient,
        api_key: IssuedKey,
        session: AsyncSession,
        org: Organization,
    ) -> None:
        response = await client.get(osmand_url(api_key, now_query("never-registered")))
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "bad_request"
        assert await batches_of(session, org) == []

    async def test_unknown_device_of_the_json_form_is_404(
        self, client: httpx.AsyncClient, api_key: IssuedKey
    ) -> None:
        response = await client.post(
            osmand_url(api_key), content=TRACCAR_JSON, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    async def test_the_json_form_with_a_lone_surrogate_is_read(
        self, client: httpx.AsyncClient, api_key: IssuedKey
    ) -> None:
        # Half an emoji in a free-text field: read as U+FFFD, not a malformed body.
        body = TRACCAR_JSON.replace('"extras":{}', '"extras":{"note":"\\ud83d"}')

        response = await client.post(
            osmand_url(api_key), content=body, headers={"Content-Type": "application/json"}
        )

        assert response.json()["error"]["code"] == "not_found"  # as its device is unknown

    async def test_missing_id_is_400(self, client: httpx.AsyncClient, api_key: IssuedKey) -> None:
        response = await client.get(osmand_url(api_key, "lat=1&lon=2"))
        assert response.status_code == 400

    async def test_bad_key_is_401(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/ingest/osmand/mp_notakeyatall?id=1&lat=1&lon=2")
        assert response.status_code == 401

    async def test_a_key_holding_a_nul_is_401(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/ingest/osmand/mp_%00abcdefghij?id=x&lat=1&lon=2")
        assert response.status_code == 401

    async def test_unparseable_json_body_is_400(
        self, client: httpx.AsyncClient, api_key: IssuedKey
    ) -> None:
        response = await client.post(
            osmand_url(api_key), content=b"{", headers={"Content-Type": "application/json"}
        )
        assert response.json()["error"]["code"] == "malformed_body"


@pytest.fixture
async def coalescing(
    make_settings: Callable[..., IngestSettings], database: Database, redis: Redis
) -> AsyncIterator[httpx.AsyncClient]:
    """An ingest app whose OsmAnd fixes of one key gather for 0.2 s (keys cached a minute)."""
    settings = make_settings(auth={"principal_cache_s": 60}, ingest={"osmand_linger_s": 0.2})
    async with app_client(create_app(settings), database) as client:
        yield client


class TestCoalescing:
    async def test_concurrent_fixes_share_one_batch(
        self,
        coalescing: httpx.AsyncClient,
        api_key: IssuedKey,
        session: AsyncSession,
        org: Organization,
    ) -> None:
        devices = [await make_device(session, org) for _ in range(5)]
        first = await coalescing.get(osmand_url(api_key, now_query(devices[0].unique_id)))
        assert first.status_code == 200  # the key and filters are cached from here on
        started = asyncio.get_running_loop().time()
        responses = await asyncio.gather(
            *(coalescing.get(osmand_url(api_key, now_query(d.unique_id))) for d in devices[1:]),
            coalescing.get(osmand_url(api_key, now_query("stranger"))),
        )
        elapsed = asyncio.get_running_loop().time() - started
        assert [r.status_code for r in responses] == [200, 200, 200, 200, 400]
        assert elapsed < 1.0
        batches = await batches_of(session, org)
        assert [b.accepted for b in batches] == [1, 4]
        assert len(batches[1].device_ids) == 4

    async def test_a_phone_sending_a_sim_number_spoils_no_ones_fix(
        self,
        coalescing: httpx.AsyncClient,
        api_key: IssuedKey,
        session: AsyncSession,
        org: Organization,
    ) -> None:
        # A 20-digit ICCID is an integer beyond 64 bits: it made the group's write fail, and
        # every phone whose fix shared it got a 500 (and resent it, forever).
        devices = [await make_device(session, org) for _ in range(4)]
        iccid = "89014103211118510720"
        await coalescing.get(osmand_url(api_key, now_query(devices[0].unique_id)))
        responses = await asyncio.gather(
            *(coalescing.get(osmand_url(api_key, now_query(d.unique_id))) for d in devices[1:3]),
            coalescing.get(osmand_url(api_key, now_query(devices[3].unique_id, iccid=iccid))),
        )

        assert [r.status_code for r in responses] == [200, 200, 200]
        stored = await session.execute(
            select(Position).where(col(Position.device_id) == devices[3].id)
        )
        assert stored.scalar_one().attributes == {"iccid": iccid}


class TestKeyNeverLogged:
    async def test_no_log_line_holds_the_key(
        self,
        client: httpx.AsyncClient,
        api_key: IssuedKey,
        session: AsyncSession,
        org: Organization,
        caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # The test's own HTTP client logs the URLs it requests; the app is what is checked.
        monkeypatch.setattr(logging.getLogger("httpx"), "disabled", True)
        caplog.set_level(logging.DEBUG)
        device = await make_device(session, org)
        for query in (now_query(device.unique_id), "lat=1", now_query("who"), "id=a&lat=0&lon=0"):
            await client.get(osmand_url(api_key, query))
        await client.post(
            osmand_url(api_key), content=b"{", headers={"Content-Type": "application/json"}
        )
        wrong = f"mp_{uuid.uuid4().hex}"
        await client.get(f"/ingest/osmand/{wrong}?id=1")
        # Every record the app logged, all fields included: the standard library's records
        # and the access log's lines, which go straight to stdout.
        access_log.flush()
        logged = caplog.text + capsys.readouterr().out
        assert "/ingest/osmand/{api_key}" in logged
        assert api_key.secret not in logged
        assert api_key.secret[3:15] not in logged
        assert wrong not in logged
