"""The summary's common reads, answered by the route itself (``direct``), get exactly the
answers FastAPI's own resolution gives them, errors included."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_api.routes import reports as reports_routes
from milepost_common.testing.factories import make_device
from services.api.tests.api_support import Bearer, Team, answers_to, assert_same_answers, trip

SUMMARY = "/api/v1/reports/summary"
JAN1 = datetime(2026, 1, 1, 8, tzinfo=UTC)

QUERIES = [
    "",
    "from=2026-01-01",
    "to=2026-01-08",
    "from=2026-01-01&to=2026-01-03",
    "from=2026-01-01&to=2026-01-03&group_by=day",
    "from=2026-01-01&to=2026-01-03&group_by=week",
    "from=2026-01-03&to=2026-01-01",
    "from=2024-01-01&to=2026-01-01",
    "from=2026-02-30&to=2026-03-02",
    "from=2026-1-1&to=2026-01-03",
    "from=yesterday",
    "from=",
    "from=2026-01-01T00:00:00Z&to=2026-01-03",
    "from=2026-01-01T00:00:00&to=2026-01-03",
    "from=2026-01-01&from=2026-01-02&to=2026-01-03",
    "from=2026-01-01&to=2026-01-03&unknown=1",
]


class TestDirectSummary:
    async def test_the_same_answers_as_fastapis_resolution(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        redis: Redis,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        team.org.timezone = "Europe/Berlin"  # a date is its midnight there, not in UTC
        session.add(team.org)
        device = await make_device(session, team.org)
        await trip(session, device, JAN1, 60, 50, 100)
        vehicles = ["", str(device.id), str(device.id).upper(), str(uuid.uuid4()), "x"]
        viewer = bearer(team.viewer)
        requests = [
            (f"{SUMMARY}?{query}&vehicle_id={vehicle}" if vehicle else f"{SUMMARY}?{query}", viewer)
            for vehicle in vehicles
            for query in QUERIES
        ]
        path = f"{SUMMARY}?from=2026-01-01&to=2026-01-03"
        requests += [(path, {}), (path, {"Authorization": "Bearer nonsense"})]

        await redis.flushdb()  # each pass computes its own answers
        direct = await answers_to(client, requests)
        monkeypatch.setattr(reports_routes, "_common_summary", lambda _request: None)
        await redis.flushdb()
        resolved = await answers_to(client, requests)

        assert {status for status, _, _ in direct} == {200, 401, 404, 422}
        assert any(status == 200 and b"50000.0" in body for status, body, _ in direct)
        assert_same_answers(direct, resolved)

    @pytest.mark.usefixtures("unresolved")
    async def test_common_reads_skip_the_resolution(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        viewer = bearer(team.viewer)
        ok = await client.get(SUMMARY, params={"from": "2026-01-01"}, headers=viewer)
        refused = await client.get(SUMMARY, params={"from": "2026-01-01"})
        assert ok.status_code == 200
        assert refused.status_code == 401
        with pytest.raises(AssertionError, match="resolved by FastAPI"):
            await client.get(SUMMARY, params={"from": "2026-01-01T00:00:00Z"}, headers=viewer)
