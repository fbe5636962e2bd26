from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from milepost_common.domain.audit.models import AuditEntry
from milepost_common.domain.geofences.models import Geofence
from services.api.tests.api_support import Bearer, Team, error_code

GEOFENCES = "/api/v1/geofences"
SQUARE = {
    "type": "Polygon",
    "coordinates": [[[13.3, 52.5], [13.5, 52.5], [13.5, 52.6], [13.3, 52.6], [13.3, 52.5]]],
}


class TestGeofences:
    async def test_crud(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        headers = bearer(team.manager)
        created = await client.post(
            "/api/v1/geofences", json={"name": "Center", "geometry": SQUARE}, headers=headers
        )
        geofence_id = created.json()["id"]
        circle = await client.patch(
            f"/api/v1/geofences/{geofence_id}",
            json={"geometry": {"type": "Point", "coordinates": [13.4, 52.5]}, "radius_m": 300},
            headers=headers,
        )
        listed = await client.get("/api/v1/geofences", headers=bearer(team.viewer))
        deleted = await client.delete(f"/api/v1/geofences/{geofence_id}", headers=headers)

        assert created.status_code == 201
        assert created.json()["geometry"] == SQUARE
        assert circle.json()["radius_m"] == 300.0
        assert [g["id"] for g in listed.json()["items"]] == [geofence_id]
        assert deleted.status_code == 204
        actions = set((await session.scalars(select(AuditEntry.action))).all())
        assert {"geofences.create", "geofences.update", "geofences.delete"} <= actions

    @pytest.mark.parametrize(
        "payload",
        [
            {
                "name": "open ring",
                "geometry": {"type": "Polygon", "coordinates": [[[0, 1], [1, 1], [1, 2], [0, 2]]]},
            },
            {"name": "no radius", "geometry": {"type": "Point", "coordinates": [13.4, 52.5]}},
            {
                "name": "zero radius",
                "geometry": {"type": "Point", "coordinates": [13.4, 52.5]},
                "radius_m": 0,
            },
            {
                "name": "lat out of range",
                "geometry": {"type": "Point", "coordinates": [13.4, 95]},
                "radius_m": 5,
            },
            {"name": "line", "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}},
            {"name": "radius on polygon", "geometry": SQUARE, "radius_m": 10},
        ],
    )
    async def test_invalid_shapes_are_422(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer, payload: dict[str, Any]
    ) -> None:
        response = await client.post(
            "/api/v1/geofences", json=payload, headers=bearer(team.manager)
        )
        assert response.status_code == 422
        assert error_code(response) == "validation_failed"

    async def test_a_polygon_across_the_antimeridian_is_422_saying_so(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        # Read as GeoJSON reads it, the box meant around Fiji's 180th meridian was the band
        # 359.8 degrees wide between its edges: inside the box was "out", Greenwich "in".
        def box(west: float, east: float) -> dict[str, Any]:
            ring = [[west, -17.0], [east, -17.0], [east, -16.0], [west, -16.0], [west, -17.0]]
            return {"name": "Fiji", "geometry": {"type": "Polygon", "coordinates": [ring]}}

        headers = bearer(team.manager)
        across = await client.post("/api/v1/geofences", json=box(179.9, -179.9), headers=headers)
        beside = await client.post("/api/v1/geofences", json=box(179.5, 179.99), headers=headers)

        assert (across.status_code, beside.status_code) == (422, 201)
        assert "antimeridian" in across.text

    async def test_a_polygon_of_more_than_10000_positions_in_all_is_422(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        # Every ring within its own 10,000, but the workers index and measure them all.
        def ring(west: float, positions: int) -> list[list[float]]:
            teeth = [[west + i / 1e4, 52.5 + 0.1 * (i % 2)] for i in range(positions - 2)]
            return [*teeth, [west, 52.4], teeth[0]]

        headers = bearer(team.manager)
        over = {"type": "Polygon", "coordinates": [ring(13.0, 5_000), ring(13.6, 5_001)]}
        at_cap = {"type": "Polygon", "coordinates": [ring(13.0, 5_000), ring(13.6, 5_000)]}
        refused = await client.post(
            GEOFENCES, json={"name": "comb", "geometry": over}, headers=headers
        )
        accepted = await client.post(
            GEOFENCES, json={"name": "comb", "geometry": at_cap}, headers=headers
        )

        assert (refused.status_code, accepted.status_code) == (422, 201)
        assert error_code(refused) == "validation_failed"
        assert "at most 10,000 positions" in refused.text

    async def test_in_use_geofence_cannot_be_deleted(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        headers = bearer(team.manager)
        geofence = (
            await client.post(
                "/api/v1/geofences", json={"name": "Depot", "geometry": SQUARE}, headers=headers
            )
        ).json()
        await client.post(
            "/api/v1/alert-rules",
            json={
                "name": "Left",
                "type": "geofence_exit",
                "params": {"geofence_id": geofence["id"]},
            },
            headers=headers,
        )
        response = await client.delete(f"/api/v1/geofences/{geofence['id']}", headers=headers)
        assert response.status_code == 409


class TestVertexLimit:
    async def test_a_geometry_past_the_organizations_vertices_is_a_409(
        self,
        api_app: FastAPI,
        client: httpx.AsyncClient,
        team: Team,
        other_team: Team,
        bearer: Bearer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # The square counts 5 positions, a circle 1: 11 in all fit, 12 do not.
        monkeypatch.setattr(api_app.state.ctx.settings.api, "max_geofence_vertices_per_org", 11)
        circle = {"type": "Point", "coordinates": [13.4, 52.5]}
        manager = bearer(team.manager)

        def create(geometry: dict[str, Any], headers: dict[str, str]) -> Any:
            extra = {"radius_m": 100} if geometry["type"] == "Point" else {}
            body = {"name": "Fence", "geometry": geometry, **extra}
            return client.post(GEOFENCES, json=body, headers=headers)

        first, second = await create(SQUARE, manager), await create(SQUARE, manager)
        circle_fits = await create(circle, manager)
        over = await create(circle, manager)
        elsewhere = await create(SQUARE, bearer(other_team.manager))
        # A new geometry counts in place of the old one: another square for a square fits,
        # a square for the circle does not.
        moved = {**SQUARE, "coordinates": [[[x + 0.1, y] for x, y in SQUARE["coordinates"][0]]]}
        reshaped = await client.patch(
            f"{GEOFENCES}/{first.json()['id']}", json={"geometry": moved}, headers=manager
        )
        grown = await client.patch(
            f"{GEOFENCES}/{circle_fits.json()['id']}", json={"geometry": SQUARE}, headers=manager
        )
        renamed = await client.patch(
            f"{GEOFENCES}/{first.json()['id']}", json={"name": "Renamed"}, headers=manager
        )

        assert [r.status_code for r in (first, second, circle_fits)] == [201, 201, 201]
        assert over.status_code == 409
        assert over.json()["error"]["code"] == "conflict"
        assert over.json()["error"]["message"].startswith(
            "The organization's geofences may hold 11 vertices in all; with this geometry they"
            " would hold 12."
        )
        assert elsewhere.status_code == 201
        assert reshaped.status_code == 200
        assert reshaped.json()["geometry"] == moved
        assert grown.status_code == 409  # 5 + 5 + 5
        assert renamed.status_code == 200  # no geometry sent: nothing counted
        listed = await client.get(GEOFENCES, headers=manager)
        assert len(listed.json()["items"]) == 3

    async def test_a_malformed_fence_written_by_hand_counts_one(
        self,
        api_app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(api_app.state.ctx.settings.api, "max_geofence_vertices_per_org", 7)
        for geometry in (
            {"type": "Polygon", "coordinates": "x"},
            {"type": "Polygon", "coordinates": [1]},
        ):
            session.add(Geofence(org_id=team.org.id, name="By hand", geometry=geometry))
        await session.flush()

        fits = await client.post(
            GEOFENCES, json={"name": "Fence", "geometry": SQUARE}, headers=bearer(team.manager)
        )

        assert fits.status_code == 201  # 1 + 1 + 5
