"""The history read's hot path answers exactly what FastAPI's own resolution and the
datetime mapping answered before it: times sent by Postgres as text come out as orjson
writes a datetime, and the requests the route reads itself (``direct``) get the answers
FastAPI gives them, without passing through FastAPI's router when the process is not
traced (``DirectDispatch``)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import fastapi.routing
import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_api import geojson
from milepost_api.routes import positions as positions_routes
from milepost_common.domain.positions.schemas import LatestRow, PositionRow
from milepost_common.pagination import encode_cursor
from milepost_common.testing.factories import make_device, make_device_state, make_position
from services.api.tests.api_support import Bearer, Team, answers_to, assert_same_answers

BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)

# Whole seconds often (most fixes), any microsecond otherwise.
microseconds = st.one_of(st.just(0), st.integers(0, 999_999))
fix_times = st.lists(
    st.builds(
        lambda s, us: BASE + timedelta(seconds=s, microseconds=us),
        st.integers(0, 3 * 3600),
        microseconds,
    ),
    min_size=2,
    max_size=6,
    unique=True,
)


def written(moment: datetime) -> str:
    return orjson.dumps(moment, option=orjson.OPT_UTC_Z).decode()[1:-1]


tenths = st.one_of(st.none(), st.floats(-1e6, 1e6))


@given(st.datetimes(timezones=st.just(UTC)), tenths, tenths, tenths)
def test_a_latest_item_is_its_fix_as_the_history_writes_it(
    moment: datetime, speed: float | None, altitude: float | None, accuracy: float | None
) -> None:
    """The fleet's latest positions (the time as asyncpg's UTC datetime) write each fix
    byte for byte as a history page writes it (the time as Postgres's JSON text, which
    ``to_json`` writes like orjson's naive datetime up to trailing zeros), the vehicle
    first."""
    fix = (52.5, 13.4, speed, 90.0, altitude, accuracy, '{"ignition": true}')
    vehicle = ("0b9e4d0c-6a55-4a8e-9f0e-5f2a4f3b8c11", "Van 7", None)
    postgres_text = orjson.dumps(moment.replace(tzinfo=None)).decode()
    history = geojson.position_items([PositionRow(postgres_text, *fix)])
    latest = geojson.latest_items([LatestRow(*vehicle, moment, *fix)])
    vehicle_fields = b'{"vehicle_id":"%s","vehicle_name":"Van 7","vehicle_plate":null,' % (
        vehicle[0].encode()
    )
    assert geojson.page_body(latest, None) == geojson.page_body(history, None).replace(
        b'{"items":[{', b'{"items":[' + vehicle_fields, 1
    )
    assert orjson.loads(geojson.page_body(latest, None))["items"][0]["fix_time"] == written(moment)


class TestTimesFromPostgres:
    @settings(
        max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
    )
    @given(fix_times)
    async def test_items_and_cursor_as_from_datetimes(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        times: list[datetime],
    ) -> None:
        device = await make_device(session, team.org)
        for moment in times:
            await make_position(session, device, moment)
        page = (
            await client.get(
                f"/api/v1/vehicles/{device.id}/positions",
                params={"limit": len(times) - 1},
                headers=bearer(team.viewer),
            )
        ).json()
        ordered = sorted(times)
        assert [item["fix_time"] for item in page["items"]] == [written(t) for t in ordered[:-1]]
        assert page["next_cursor"] == encode_cursor(["fix_time", ordered[-2]], device.id)


QUERIES = [
    "",
    "limit=2",
    "limit=1&limit=3",
    "limit=0100",
    "limit=+2",
    "limit=%202",
    "limit=2.0",
    "limit=",
    "limit=0",
    "limit=10000",
    "limit=10001",
    "sort=-fix_time&limit=2",
    "sort=fix_time",
    "sort=",
    "sort=-speed",
    "cursor=",
    "cursor=not-a-cursor",
    "cursor=" + "x" * 513,
    "from=2026-01-01T00:00:00Z",
    "to=yesterday",
    "unknown=1&limit=2",
]


@pytest.fixture
def unrouted(monkeypatch: pytest.MonkeyPatch) -> None:
    """FastAPI's routes made to fail once the router has selected one: a request answered
    anyway never went through the router."""

    async def unused(*args: object, **kwargs: object) -> None:
        raise AssertionError("routed by FastAPI")

    monkeypatch.setattr(fastapi.routing.APIRoute, "handle", unused)


class TestDirectReads:
    async def test_the_same_answers_as_fastapis_resolution(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        device = await make_device(session, team.org)
        for s in range(4):
            await make_position(session, device, BASE + timedelta(seconds=s), speed=s + 0.05)
        ids = [str(device.id), str(device.id).upper(), device.id.hex, str(uuid.uuid4()), "x"]
        viewer = bearer(team.viewer)
        requests = [(f"/api/v1/vehicles/{i}/positions?{q}", viewer) for i in ids for q in QUERIES]
        path = f"/api/v1/vehicles/{device.id}/positions?limit=2"
        requests += [(path, {}), (path, {"Authorization": "Bearer nonsense"})]

        direct = await answers_to(client, requests)
        monkeypatch.setattr(positions_routes, "_common_page", lambda _request: None)
        resolved = await answers_to(client, requests)

        assert {status for status, _, _ in direct} == {200, 401, 404, 422}
        assert_same_answers(direct, resolved)

    @pytest.mark.usefixtures("unresolved")
    async def test_common_reads_skip_the_resolution(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        await make_position(session, device, BASE)
        url = f"/api/v1/vehicles/{device.id}/positions"
        response = await client.get(url, params={"limit": 5}, headers=bearer(team.viewer))
        assert response.status_code == 200
        with pytest.raises(AssertionError, match="resolved by FastAPI"):
            await client.get(url, params={"from": BASE.isoformat()}, headers=bearer(team.viewer))

    @pytest.mark.usefixtures("unresolved")
    async def test_the_latest_positions_skip_the_resolution(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        await make_device_state(session, device, last_fix_time=BASE, last_lat=1.5, last_lon=2.5)
        url = "/api/v1/positions/latest"
        response = await client.get(url, headers=bearer(team.viewer))
        assert response.status_code == 200
        assert [item["vehicle_id"] for item in response.json()["items"]] == [str(device.id)]
        for headers in ({}, {"Authorization": "Bearer nonsense"}):
            refused = await client.get(url, headers=headers)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "unauthorized"


class TestDirectDispatch:
    @pytest.mark.usefixtures("unrouted")
    async def test_common_reads_and_their_refusals_skip_the_router(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        await make_position(session, device, BASE)
        await make_device_state(session, device, last_fix_time=BASE, last_lat=1.5, last_lon=2.5)
        history = f"/api/v1/vehicles/{device.id}/positions?limit=5"
        latest = "/api/v1/positions/latest"
        foreign = f"/api/v1/vehicles/{uuid.uuid4()}/positions"

        assert (await client.get(history, headers=bearer(team.viewer))).status_code == 200
        assert (await client.get(latest, headers=bearer(team.viewer))).status_code == 200
        for url, headers, status, code in (
            (latest, {}, 401, "unauthorized"),
            (history, {"Authorization": "Bearer nonsense"}, 401, "unauthorized"),
            (foreign, bearer(team.viewer), 404, "not_found"),
        ):
            refused = await client.get(url, headers=headers)
            assert refused.status_code == status
            assert refused.json()["error"]["code"] == code
        with pytest.raises(AssertionError, match="routed by FastAPI"):  # not a common read
            await client.get(history + "&from=" + BASE.isoformat(), headers=bearer(team.viewer))

    async def test_a_declined_read_is_offered_to_its_handler_once(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        device = await make_device(session, team.org)
        offered = []
        read_page = positions_routes._common_page

        def counted(request: Any) -> Any:
            offered.append(request.url.query)
            return read_page(request)

        monkeypatch.setattr(positions_routes, "_common_page", counted)
        url = f"/api/v1/vehicles/{device.id}/positions"
        window = {"from": BASE.isoformat()}  # not a common read: FastAPI resolves it

        response = await client.get(url, params=window, headers=bearer(team.viewer))

        assert response.status_code == 200
        assert len(offered) == 1

    async def test_logged_and_counted_under_the_route_template(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        device = await make_device(session, team.org)
        await make_position(session, device, BASE)
        capsys.readouterr()
        response = await client.get(
            f"/api/v1/vehicles/{device.id}/positions?limit=1", headers=bearer(team.viewer)
        )
        await asyncio.sleep(0)  # the loop's next turn writes the access log's line
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        access = [line for line in lines if line.get("event") == "request"]
        metrics = (await client.get("/metrics")).text

        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "private, max-age=30"  # the route's policy
        assert [line["route"] for line in access] == ["/api/v1/vehicles/{vehicle_id}/positions"]
        assert access[0]["org_id"] == str(team.org.id)
        assert 'route="/api/v1/vehicles/{vehicle_id}/positions",status="200"' in metrics
        assert str(device.id) not in metrics
