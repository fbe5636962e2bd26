"""Geofence DTOs: a GeoJSON Polygon ([lon, lat], closed rings) or a Point with ``radius_m``."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, NamedTuple, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from milepost_common.units import Metres

Lon = Annotated[float, Field(ge=-180, le=180)]
Lat = Annotated[float, Field(ge=-90, le=90)]
LonLat = tuple[Lon, Lat]

# Positions in all of a polygon's rings. The workers index a polygon in bands of latitude;
# an edge is listed in every band it spans, so a fence whose edges all span its height
# (a comb, legal GeoJSON) costs O(vertices^1.5) to index and O(vertices) for every fix:
# 150,000 positions in 15 rings (a 950 KB body) took a worker 24 s and 332 MB to index
# and 1.3 s a fix; 10,000 take 0.2 s, 9 MB and ~12 ms. A single ring could already hold
# 10,000.
MAX_POLYGON_VERTICES = 10_000


class PointGeometry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["Point"]
    coordinates: LonLat = Field(description="[lon, lat] of the circle's center.")

    @property
    def vertices(self) -> int:
        """What the circle counts against the organization's vertex limit."""
        return 1


class PolygonGeometry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["Polygon"]
    coordinates: list[Annotated[list[LonLat], Field(min_length=4, max_length=10_000)]] = Field(
        min_length=1,
        max_length=100,
        description="Linear rings of [lon, lat]: the outer ring first, then holes; each closed."
        f" At most {MAX_POLYGON_VERTICES:,} positions in all the rings.",
    )

    @property
    def vertices(self) -> int:
        """Positions in all rings, as sent (a ring's closing one included)."""
        return sum(map(len, self.coordinates))

    @model_validator(mode="after")
    def _closed_rings(self) -> Self:
        if self.vertices > MAX_POLYGON_VERTICES:
            raise ValueError(
                f"a polygon holds at most {MAX_POLYGON_VERTICES:,} positions in all its rings;"
                f" this one has {self.vertices:,}"
            )
        for ring in self.coordinates:
            if ring[0] != ring[-1]:
                raise ValueError("each ring must be closed: its last position equals its first")
            if len(set(ring)) < 3:
                raise ValueError("each ring needs at least three distinct positions")
            # An edge is straight in [lon, lat] (RFC 7946): from 179.9 to -179.9 it runs the
            # long way round, and the fence is the band between, not the box meant.
            if any(abs(a[0] - b[0]) > 180 for a, b in itertools.pairwise(ring)):
                raise ValueError(
                    "an edge spans more than 180 degrees of longitude: a fence across the"
                    " antimeridian is two geofences, one on each side of it"
                )
        return self


Geometry = Annotated[PointGeometry | PolygonGeometry, Field(discriminator="type")]

_CIRCLE: dict[str, Any] = {"type": "Point", "coordinates": [13.405, 52.52]}
_POLYGON: dict[str, Any] = {
    "type": "Polygon",
    "coordinates": [[[13.3, 52.5], [13.5, 52.5], [13.5, 52.6], [13.3, 52.6], [13.3, 52.5]]],
}


def _shape_matches_radius(
    geometry: PointGeometry | PolygonGeometry, radius_m: float | None
) -> None:
    if isinstance(geometry, PointGeometry) and radius_m is None:
        raise ValueError("a Point geofence needs radius_m > 0")
    if isinstance(geometry, PolygonGeometry) and radius_m is not None:
        raise ValueError("radius_m applies to Point geofences only")


class GeofenceCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "Depot", "geometry": _CIRCLE, "radius_m": 250},
                {"name": "City center", "geometry": _POLYGON},
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    geometry: Geometry
    radius_m: float | None = Field(None, gt=0, le=1_000_000, description="Point geofences only.")

    @model_validator(mode="after")
    def _radius(self) -> Self:
        _shape_matches_radius(self.geometry, self.radius_m)
        return self


class GeofenceUpdate(BaseModel):
    """Only the fields sent change; a new geometry comes with its ``radius_m`` (or none)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    geometry: Geometry | None = None
    radius_m: float | None = Field(None, gt=0, le=1_000_000)

    @model_validator(mode="after")
    def _radius(self) -> Self:
        if self.geometry is not None:
            _shape_matches_radius(self.geometry, self.radius_m)
        elif self.radius_m is not None:
            raise ValueError("send radius_m together with its geometry")
        return self


class GeofenceRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "example": {
                "id": "1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a1b",
                "name": "Depot",
                "geometry": _CIRCLE,
                "radius_m": 250.0,
                "created_at": "2026-03-01T07:00:00Z",
                "updated_at": "2026-03-01T07:00:00Z",
            }
        },
    )

    id: uuid.UUID
    name: str
    geometry: dict[str, Any] = Field(description="GeoJSON Point or Polygon, [lon, lat].")
    radius_m: Metres | None
    created_at: datetime
    updated_at: datetime


class WatchedFence(NamedTuple):
    """A geofence as the worker evaluates it: its geometry as the GeoJSON text Postgres
    writes (the same text for the same geometry), decoded only where its shape is not
    already known; a fence of 10,000 vertices takes 5–8 ms to decode."""

    id: uuid.UUID
    radius_m: float | None
    geometry: str
