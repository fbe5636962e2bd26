"""Cursors as a client may send them back: tampered ones are a 422 on every list (never a
500, never read as another instant); pages walked either way give every row once, ties at
one instant broken by id, times kept to the microsecond."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.testing.factories import make_device, make_position, make_trip
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
            (POSITIONS, [["fix_time", AT], 5]),
            ("/api/v1/trips", [["start_time", NAIVE], "{id}"]),  # a time without its offset
            ("/api/v1/alerts", [["occurred_at", NAIVE], "{id}"]),
            (POSITIONS, [["fix_time", NAIVE], "{device}"]),
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


async def walk(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any
) -> list[Any]:
    """Every item of a list, a page of one at a time."""
    items: list[Any] = []
    cursor = None
    while True:
        query = {**params, "limit": 1, **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, params=query, headers=headers)
        assert response.status_code == 200, response.text
        items += response.json()["items"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return items


class TestWalkingPages:
    @pytest.mark.parametrize("sort", ["start_time", "-start_time"])
    async def test_trips_at_one_instant_come_once_each_by_id(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        sort: str,
    ) -> None:
        at = datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=UTC)
        moments = [at, at, at, at + timedelta(microseconds=1), at - timedelta(microseconds=1)]
        trips = [
            await make_trip(session, await make_device(session, team.org), moment)
            for moment in moments
        ]

        items = await walk(client, "/api/v1/trips", bearer(team.viewer), sort=sort)

        expected = sorted(trips, key=lambda t: (t.start_time, t.id), reverse=sort[0] == "-")
        assert [i["id"] for i in items] == [str(t.id) for t in expected]
        assert items[0]["start_time"] == (
            "2026-03-29T01:00:00Z" if sort[0] == "-" else "2026-03-29T00:59:59.999998Z"
        )

    @pytest.mark.parametrize("sort", ["fix_time", "-fix_time"])
    async def test_positions_keep_their_microseconds_across_pages(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        sort: str,
    ) -> None:
        device = await make_device(session, team.org)
        base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        micros = [0, 1, 10, 500_000, 999_999, 1_000_000]
        for n in micros:
            await make_position(session, device, base + timedelta(microseconds=n))

        items = await walk(
            client, f"/api/v1/vehicles/{device.id}/positions", bearer(team.viewer), sort=sort
        )

        expected = [
            (base + timedelta(microseconds=n)).isoformat().replace("+00:00", "Z") for n in micros
        ]
        assert [i["fix_time"] for i in items] == (expected[::-1] if sort[0] == "-" else expected)


class TestACursorKeepsItsOrder:
    @pytest.mark.parametrize(
        ("path", "sort"),
        [("/api/v1/trips", "-start_time"), ("/api/v1/vehicles/{device}/positions", "-fix_time")],
    )
    async def test_a_newest_first_cursor_sent_without_its_sort_is_a_422(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        path: str,
        sort: str,
    ) -> None:
        # Sent without `sort`, a positions cursor of a newest-first walk was read oldest
        # first: the next "page" was the first page's fixes again.
        device = await make_device(session, team.org)
        base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        for minute in range(3):
            await make_position(session, device, base + timedelta(minutes=minute))
            await make_trip(session, device, base + timedelta(minutes=minute))
        url, headers = path.format(device=device.id), bearer(team.viewer)
        first = await client.get(url, params={"sort": sort, "limit": 2}, headers=headers)

        reused = await client.get(
            url, params={"cursor": first.json()["next_cursor"], "limit": 2}, headers=headers
        )

        assert reused.status_code == 422, reused.text
        assert reused.json()["error"]["details"][0]["loc"] == ["query", "cursor"]
