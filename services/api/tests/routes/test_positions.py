from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_api import geojson
from milepost_common.domain.devices.models import DeviceState
from milepost_common.live import latest_positions_key
from milepost_common.testing.factories import make_device, make_device_state, make_position
from services.api.tests.api_support import Bearer, Team, error_code

BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)


def at(seconds: int) -> datetime:
    return BASE + timedelta(seconds=seconds)


class TestListPositions:
    async def test_shape_window_and_order(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        for s in (0, 10, 20, 30):
            await make_position(
                session, device, at(s), speed=float(s), attributes={"ignition": True}
            )
        response = await client.get(
            f"/api/v1/vehicles/{device.id}/positions",
            params={"from": at(10).isoformat(), "to": at(30).isoformat()},
            headers=bearer(team.viewer),
        )
        body = response.json()
        assert response.status_code == 200
        assert [p["speed"] for p in body["items"]] == [10.0, 20.0]
        assert body["items"][0] == {
            "fix_time": at(10).isoformat().replace("+00:00", "Z"),
            "lat": 52.52,
            "lon": 13.405,
            "speed": 10.0,
            "course": None,
            "altitude": None,
            "accuracy": None,
            "attributes": {"ignition": True},
        }
        assert body["next_cursor"] is None

        newest_first = await client.get(
            f"/api/v1/vehicles/{device.id}/positions",
            params={"sort": "-fix_time", "limit": 2},
            headers=bearer(team.viewer),
        )
        assert [p["speed"] for p in newest_first.json()["items"]] == [30.0, 20.0]

    async def test_pages_neither_skip_nor_repeat_under_concurrent_inserts(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        original = [at(10 * i) for i in range(1, 10)]
        for t in original:
            await make_position(session, device, t)
        seen: list[str] = []
        cursor = None
        inserted = 0
        while True:
            params: dict[str, str | int] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (
                await client.get(
                    f"/api/v1/vehicles/{device.id}/positions",
                    params=params,
                    headers=bearer(team.viewer),
                )
            ).json()
            seen += [p["fix_time"] for p in page["items"]]
            # Between pages, fixes arrive both before the cursor and after it.
            await make_position(session, device, at(10 * inserted + 5))
            await make_position(session, device, at(1000 + inserted))
            inserted += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        expected = {t.isoformat().replace("+00:00", "Z") for t in original}
        assert len(seen) == len(set(seen))
        assert seen == sorted(seen)
        assert expected <= set(seen)

    async def test_geojson_feature_collection(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        await make_position(session, device, at(0), lat=48.1, lon=11.5)
        response = await client.get(
            f"/api/v1/vehicles/{device.id}/positions",
            headers={**bearer(team.viewer), "Accept": "application/geo+json"},
        )
        body = response.json()
        assert response.headers["content-type"] == "application/geo+json"
        assert body["type"] == "FeatureCollection"
        assert body["features"][0]["geometry"] == {"type": "Point", "coordinates": [11.5, 48.1]}
        assert "lat" not in body["features"][0]["properties"]

    async def test_limit_above_10000_and_foreign_cursor_are_422(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        one = await make_device(session, team.org)
        two = await make_device(session, team.org)
        for t in (at(0), at(1)):
            await make_position(session, one, t)
        cursor = (
            await client.get(
                f"/api/v1/vehicles/{one.id}/positions",
                params={"limit": 1},
                headers=bearer(team.viewer),
            )
        ).json()["next_cursor"]
        too_big = await client.get(
            f"/api/v1/vehicles/{one.id}/positions",
            params={"limit": 10_001},
            headers=bearer(team.viewer),
        )
        other = await client.get(
            f"/api/v1/vehicles/{two.id}/positions",
            params={"cursor": cursor},
            headers=bearer(team.viewer),
        )
        assert (too_big.status_code, other.status_code) == (422, 422)
        assert error_code(other) == "validation_failed"


class TestLatestPositions:
    async def test_served_from_the_cache_until_the_worker_drops_it(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        redis: Redis,
        team: Team,
        bearer: Bearer,
    ) -> None:
        device = await make_device(session, team.org)
        state = DeviceState(
            device_id=device.id, org_id=team.org.id, last_fix_time=at(0), last_lat=1.0, last_lon=2.0
        )
        session.add(state)
        await session.flush()
        url = "/api/v1/positions/latest"

        first = (await client.get(url, headers=bearer(team.viewer))).json()
        state.last_lat = 3.0
        session.add(state)
        await session.flush()
        cached = (await client.get(url, headers=bearer(team.viewer))).json()
        await redis.delete(latest_positions_key(team.org.id))  # what a position event does
        # Redis pushes the drop to the api's tracking connection asynchronously (well under a
        # millisecond): the api may answer from its copy until then, so wait a bounded time.
        deadline = time.monotonic() + 2.0
        while True:
            fresh = (await client.get(url, headers=bearer(team.viewer))).json()
            if fresh["items"][0]["lat"] == 3.0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)

        assert first["items"][0]["vehicle_id"] == str(device.id)
        assert first["next_cursor"] is None
        assert cached["items"][0]["lat"] == 1.0
        assert fresh["items"][0]["lat"] == 3.0

    async def test_geojson_is_made_once_per_version_with_its_own_etag(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        redis: Redis,
        team: Team,
        bearer: Bearer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        made = 0
        as_features = geojson.page_as_features

        def counted(page: bytes) -> bytes:
            nonlocal made
            made += 1
            return as_features(page)

        monkeypatch.setattr(geojson, "page_as_features", counted)
        device = await make_device(session, team.org)
        state = await make_device_state(
            session, device, last_fix_time=at(0), last_lat=1.0, last_lon=2.0
        )
        url, wanted = "/api/v1/positions/latest", {"Accept": "application/geo+json"}
        headers = {**bearer(team.viewer), **wanted}

        answers = [await client.get(url, headers=headers) for _ in range(3)]
        etag = answers[0].headers["ETag"]
        unchanged = await client.get(url, headers={**headers, "If-None-Match": etag})
        as_json = await client.get(url, headers=bearer(team.viewer))
        state.last_lat = 3.0
        session.add(state)
        await session.flush()
        await redis.delete(latest_positions_key(team.org.id))  # what a position event does
        deadline = time.monotonic() + 2.0  # the drop reaches the api asynchronously
        while (changed := await client.get(url, headers=headers)).headers["ETag"] == etag:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)

        feature = answers[0].json()["features"][0]
        assert answers[0].headers["content-type"] == "application/geo+json"
        assert feature["geometry"]["coordinates"] == [2.0, 1.0]
        assert feature["properties"]["vehicle_id"] == str(device.id)
        assert {a.content for a in answers} == {answers[0].content}
        assert {a.headers["ETag"] for a in answers} == {etag}
        assert unchanged.status_code == 304
        assert as_json.headers["ETag"] != etag  # another representation, another tag
        assert changed.json()["features"][0]["geometry"]["coordinates"] == [2.0, 3.0]
        assert made == 2  # once per version, not once per request

    async def test_a_client_that_accepts_gzip_gets_the_cached_answer_compressed(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        for n in range(20):  # enough vehicles for an answer worth compressing
            device = await make_device(session, team.org)
            session.add(
                DeviceState(
                    device_id=device.id,
                    org_id=team.org.id,
                    last_fix_time=at(n),
                    last_lat=52.5,
                    last_lon=13.4,
                )
            )
        await session.flush()
        url = "/api/v1/positions/latest"
        plain = await client.get(
            url, headers={**bearer(team.viewer), "Accept-Encoding": "identity"}
        )
        compressed = await client.get(
            url, headers={**bearer(team.viewer), "Accept-Encoding": "gzip"}
        )
        again = await client.get(
            url,
            headers={
                **bearer(team.viewer),
                "Accept-Encoding": "gzip",
                "If-None-Match": compressed.headers["ETag"],
            },
        )

        assert "Content-Encoding" not in plain.headers
        assert compressed.headers["Content-Encoding"] == "gzip"
        assert compressed.content == plain.content  # httpx decoded it: the same answer
        assert compressed.headers["ETag"] == plain.headers["ETag"]  # one weak validator
        assert "Accept-Encoding" in compressed.headers["Vary"]
        assert "Accept-Encoding" in plain.headers["Vary"]
        assert again.status_code == 304
        assert "Content-Encoding" not in again.headers
