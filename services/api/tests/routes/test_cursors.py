"""Cursors as a client may send them back: tampered ones are a 422 on every list (never a
500, never read as another instant)."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.testing.factories import make_device
from services.api.tests.api_support import Bearer, Team

AT = "2026-03-01T12:00:00Z"


def cursor_of(value: Any) -> str:
    """A cursor as the server writes one (unpadded URL-safe base64 of JSON)."""
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


NAIVE = "2026-03-01T12:00:00"
POSITIONS = "/api/v1/vehicles/{device}/positions"


class TestTamperedCursors:
    @pytest.mark.parametrize(
        ("path", "held"),
        [
            ("/api/v1/trips", [["start_time", AT], 5]),  # a number where the id goes
            ("/api/v1/stops", [["start_time", AT], ["x"]]),  # a list there
            ("/api/v1/alerts", [["occurred_at", AT], 5]),
            (POSITIONS, [AT, 5]),
            ("/api/v1/trips", [["start_time", NAIVE], "{id}"]),  # a time without its offset
            ("/api/v1/alerts", [["occurred_at", NAIVE], "{id}"]),
            (POSITIONS, [NAIVE, "{device}"]),
        ],
    )
    async def test_a_422_not_a_500(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        path: str,
        held: list[Any],
    ) -> None:
        device = await make_device(session, team.org)
        names = {"device": device.id, "id": uuid.uuid4()}
        held = [v.format(**names) if isinstance(v, str) else v for v in held]

        response = await client.get(
            path.format(**names), params={"cursor": cursor_of(held)}, headers=bearer(team.viewer)
        )

        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"][0]["loc"] == ["query", "cursor"]
