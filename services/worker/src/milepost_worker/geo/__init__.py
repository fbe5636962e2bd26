"""Plain geometry on WGS84: haversine distance, circles and polygons (no I/O)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

EARTH_RADIUS_M = 6_371_008.8
_DEG = math.pi / 180.0


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in meters (mean Earth radius 6,371,008.8 m)."""
    phi1 = lat1 * _DEG
    phi2 = lat2 * _DEG
    dphi = phi2 - phi1
    dlmb = (lon2 - lon1) * _DEG
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True, slots=True)
class Circle:
    lat: float
    lon: float
    radius_m: float

    def signed_distance_m(self, lat: float, lon: float) -> float:
        """Meters inside the boundary (positive) or outside it (negative)."""
        return self.radius_m - haversine_m(self.lat, self.lon, lat, lon)


@dataclass(frozen=True, slots=True)
class Polygon:
    """Rings of (lon, lat) vertices: the outer ring first, then holes."""

    rings: tuple[tuple[tuple[float, float], ...], ...]
    # The outer ring's box (west, south, east, north), which holds every ring.
    box: tuple[float, float, float, float] = field(init=False)

    def __post_init__(self) -> None:
        lons, lats = [v[0] for v in self.rings[0]], [v[1] for v in self.rings[0]]
        object.__setattr__(self, "box", (min(lons), min(lats), max(lons), max(lats)))

    def clear_of(self, lat: float, lon: float, metres: float) -> bool:
        """Whether the point is more than ``metres`` outside the polygon's box, so more than
        that outside the polygon, on the projection ``signed_distance_m`` measures on: its
        answer known without reading a vertex (a fix far from a fence of 10,000 vertices
        costs 6.5 ms there)."""
        west, south, east, north = self.box
        dlat = metres / (EARTH_RADIUS_M * _DEG)
        dlon = metres / (EARTH_RADIUS_M * _DEG * math.cos(lat * _DEG))
        return lat < south - dlat or lat > north + dlat or lon < west - dlon or lon > east + dlon

    def signed_distance_m(self, lat: float, lon: float) -> float:
        """Meters inside the boundary (positive) or outside it (negative).

        Measured on a local equirectangular projection around the point, exact enough for
        geofences of city scale and the tolerance of GPS accuracy.
        """
        kx = EARTH_RADIUS_M * _DEG * math.cos(lat * _DEG)
        ky = EARTH_RADIUS_M * _DEG
        inside = False
        nearest = math.inf
        for index, ring in enumerate(self.rings):
            pts = [((vlon - lon) * kx, (vlat - lat) * ky) for vlon, vlat in ring]
            in_ring = _contains_origin(pts)
            if index == 0:
                inside = in_ring
            elif in_ring:
                inside = False
            nearest = min(nearest, _distance_to_ring(pts))
        return nearest if inside else -nearest


def _contains_origin(pts: Sequence[tuple[float, float]]) -> bool:
    """Ray casting from the origin towards +x (even-odd rule)."""
    inside = False
    n = len(pts)
    for i in range(n):
        x1, y1 = pts[i]
        x2, y2 = pts[(i + 1) % n]
        if (y1 > 0) != (y2 > 0):
            x_cross = x1 + (0 - y1) * (x2 - x1) / (y2 - y1)
            if x_cross > 0:
                inside = not inside
    return inside


def _distance_to_ring(pts: Sequence[tuple[float, float]]) -> float:
    best = math.inf
    n = len(pts)
    for i in range(n):
        x1, y1 = pts[i]
        x2, y2 = pts[(i + 1) % n]
        dx, dy = x2 - x1, y2 - y1
        length2 = dx * dx + dy * dy
        u = 0.0 if length2 == 0 else max(0.0, min(1.0, -(x1 * dx + y1 * dy) / length2))
        px, py = x1 + u * dx, y1 + u * dy
        best = min(best, math.hypot(px, py))
    return best


Shape = Circle | Polygon


def side_of(shape: Shape, lat: float, lon: float, accuracy_m: float) -> str | None:
    """ "in" or "out" when the point is farther than ``accuracy_m`` from the boundary; None
    when it is too close to tell."""
    if isinstance(shape, Polygon) and accuracy_m >= 0 and shape.clear_of(lat, lon, accuracy_m):
        return "out"
    margin = shape.signed_distance_m(lat, lon)
    return "in" if margin > accuracy_m else "out" if -margin > accuracy_m else None


def parse_shape(geometry: Mapping[str, Any], radius_m: float | None = None) -> Shape:
    """A GeoJSON Point (+ radius in meters) or Polygon ([lon, lat] rings). Raises ValueError."""
    kind = geometry.get("type")
    coordinates = geometry.get("coordinates")
    if kind == "Point":
        radius = radius_m if radius_m is not None else geometry.get("radius_m")
        if not isinstance(coordinates, Sequence) or len(coordinates) < 2 or radius is None:
            raise ValueError("a circle needs Point coordinates and radius_m")
        if float(radius) <= 0:
            raise ValueError("radius_m must be positive")
        return Circle(lat=float(coordinates[1]), lon=float(coordinates[0]), radius_m=float(radius))
    if kind == "Polygon":
        if not isinstance(coordinates, Sequence) or not coordinates:
            raise ValueError("a polygon needs at least one ring")
        rings: list[tuple[tuple[float, float], ...]] = []
        for ring in coordinates:
            vertices = tuple((float(v[0]), float(v[1])) for v in ring)
            if len(vertices) >= 2 and vertices[0] == vertices[-1]:
                vertices = vertices[:-1]
            if len(vertices) < 3:
                raise ValueError("a polygon ring needs at least three vertices")
            rings.append(vertices)
        return Polygon(rings=tuple(rings))
    raise ValueError(f"unsupported geometry type {kind!r}")
