from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.testing.factories import make_device
from services.api.tests.api_support import Bearer, Team


class TestConditionalRequests:
    async def test_unchanged_read_answers_304_and_a_change_a_new_etag(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        url = f"/api/v1/vehicles/{device.id}"
        first = await client.get(url, headers=bearer(team.viewer))
        etag = first.headers["ETag"]

        again = await client.get(url, headers={**bearer(team.viewer), "If-None-Match": etag})
        await client.patch(url, json={"name": "Renamed"}, headers=bearer(team.manager))
        changed = await client.get(url, headers={**bearer(team.viewer), "If-None-Match": etag})

        assert etag.startswith('W/"')
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["ETag"] == etag
        assert changed.status_code == 200
        assert changed.headers["ETag"] != etag

    async def test_cache_control_is_deliberate(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        headers = bearer(team.owner)
        vehicle = await client.get(f"/api/v1/vehicles/{device.id}", headers=headers)
        latest = await client.get("/api/v1/positions/latest", headers=headers)
        history = await client.get(f"/api/v1/vehicles/{device.id}/positions", headers=headers)
        write = await client.patch(
            f"/api/v1/vehicles/{device.id}", json={"name": "x"}, headers=headers
        )
        missing = await client.get("/api/v1/vehicles/00000000-0000-0000-0000-000000000000")

        assert vehicle.headers["Cache-Control"] == "private, no-cache"
        assert latest.headers["Cache-Control"] == "private, max-age=5"
        assert history.headers["Cache-Control"] == "private, max-age=30"
        assert write.headers["Cache-Control"] == "no-store"
        assert missing.headers["Cache-Control"] == "no-store"
        assert "Authorization" in vehicle.headers["Vary"]
