"""Plain geometry on WGS84: haversine distance, circles and polygons (no I/O)."""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
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


# An edge of a polygon: (ring, lon1, lat1, lon2, lat2), the outer ring being ring 0.
Edge = tuple[int, float, float, float, float]
# Latitude's room for rounding when converting metres to degrees: keeps every edge that
# could be within the accuracy among the ones measured.
_SLACK_DEG = 1e-9
# A band with more edges than this crossing it from edge to edge sorts those by longitude
# (``Spans``): a comb, whose every tooth crosses every band, is read near the fix only.
_SPANS_FROM = 64


@dataclass(frozen=True, slots=True)
class Spans:
    """The edges of one ring that cross a band from its south to its north latitude, by
    their western end (``wests``; ``width`` the widest's span of longitude): the ones wholly
    east of a point inside the band cross its ray; those within reach are found by
    bisection."""

    ring: int
    wests: array[float]  # doubles, not float objects: a comb's bands hold millions
    edges: tuple[Edge, ...]
    width: float

    def near(self, west: float, east: float) -> tuple[Edge, ...]:
        """The edges that may reach into [west, east] of longitude."""
        return self.edges[
            bisect_left(self.wests, west - self.width) : bisect_right(self.wests, east)
        ]

    def east_of(self, lon: float) -> int:
        """How many lie wholly east of ``lon`` (by more than the rounding slack)."""
        return len(self.wests) - bisect_right(self.wests, lon + _SLACK_DEG)


@dataclass(frozen=True, slots=True)
class Polygon:
    """Rings of (lon, lat) vertices: the outer ring first, then holes."""

    rings: tuple[tuple[tuple[float, float], ...], ...]
    # The box of every ring (west, south, east, north): a hole's edges may stray out of the
    # outer ring's, and a fix near them is near the fence.
    box: tuple[float, float, float, float] = field(init=False)
    # The edges in bands of latitude, about √edges of them: a band holds every edge whose
    # latitudes reach into it, so a fix's side is read from the edges near its latitude
    # (~90 µs for 10,000 vertices) instead of from every vertex (~8 ms).
    bands: tuple[tuple[Edge, ...], ...] = field(init=False, repr=False, compare=False)
    band_deg: float = field(init=False, repr=False, compare=False)
    # Per band, when it has more than _SPANS_FROM: the edges that cross it from edge to edge,
    # by ring (``Spans``), and the band's other edges; else None (its edges read one by one).
    spans: tuple[tuple[tuple[Spans, ...], tuple[Edge, ...]] | None, ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        lons = [v[0] for ring in self.rings for v in ring]
        lats = [v[1] for ring in self.rings for v in ring]
        west, south, east, north = min(lons), min(lats), max(lons), max(lats)
        object.__setattr__(self, "box", (west, south, east, north))
        edges = [
            (index, *ring[i], *ring[(i + 1) % len(ring)])
            for index, ring in enumerate(self.rings)
            for i in range(len(ring))
        ]
        count = max(1, round(math.sqrt(len(edges))))
        object.__setattr__(self, "band_deg", (north - south) / count or 1.0)
        bands: list[list[Edge]] = [[] for _ in range(count)]
        for edge in edges:
            low, high = sorted((edge[2], edge[4]))
            for band in range(self._band(low, count), self._band(high, count) + 1):
                bands[band].append(edge)
        object.__setattr__(self, "bands", tuple(map(tuple, bands)))
        object.__setattr__(
            self, "spans", tuple(self._spans(b, edges) for b, edges in enumerate(bands))
        )

    @property
    def index_entries(self) -> int:
        """The edges its bands list, and their spans again: what the index holds."""
        spanned = sum(len(s.edges) for band in self.spans if band for s in band[0])
        return sum(map(len, self.bands)) + spanned

    def _limits(self, band: int) -> tuple[float, float]:
        """The band's south and north latitudes (the same arithmetic at build and read)."""
        south = self.box[1] + band * self.band_deg
        return south, south + self.band_deg

    def _spans(
        self, band: int, edges: list[Edge]
    ) -> tuple[tuple[Spans, ...], tuple[Edge, ...]] | None:
        if len(edges) <= _SPANS_FROM:
            return None
        south, north = self._limits(band)
        across: dict[int, list[tuple[float, Edge]]] = {}
        rest: list[Edge] = []
        for edge in edges:
            _, lon1, lat1, lon2, lat2 = edge
            if (lat1 <= south and lat2 >= north) or (lat2 <= south and lat1 >= north):
                across.setdefault(edge[0], []).append((min(lon1, lon2), edge))
            else:
                rest.append(edge)
        if sum(map(len, across.values())) <= _SPANS_FROM:
            return None
        spans = []
        for ring, keyed in sorted(across.items()):
            keyed.sort(key=lambda pair: pair[0])
            mine = tuple(edge for _, edge in keyed)
            width = max(abs(e[3] - e[1]) for e in mine)
            spans.append(Spans(ring, array("d", (west for west, _ in keyed)), mine, width))
        return tuple(spans), tuple(rest)

    def _band(self, lat: float, count: int) -> int:
        """The band of a latitude, the first or last one beyond the box; monotonic in
        ``lat``, so an edge's bands hold every latitude between its ends."""
        return min(count - 1, max(0, int((lat - self.box[1]) / self.band_deg)))

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

    def margin_within_m(self, lat: float, lon: float, metres: float) -> float:
        """``signed_distance_m`` when it is ``metres`` or less from zero; else a value of
        the same sign farther than ``metres`` from zero (``math.inf`` in size when no edge
        is that near). Reads only the edges of the bands near ``lat``: the side of the
        point from those that cross its latitude, its distance from those within
        ``metres`` of it. ``metres`` must be a finite number, not negative."""
        kx = EARTH_RADIUS_M * _DEG * math.cos(lat * _DEG)
        ky = EARTH_RADIUS_M * _DEG
        count = len(self.bands)
        crossed = [False] * len(self.rings)
        band = self._band(lat, count)
        edges: Sequence[Edge] = self.bands[band]
        spans = self.spans[band]
        south, north = self._limits(band)
        if spans is not None and south < lat < north:
            # Every edge of a span crosses the fix's latitude: the ones wholly east of it
            # cross its ray, the ones wholly west do not, the others are measured.
            edges = list(spans[1])
            for span in spans[0]:
                crossed[span.ring] ^= span.east_of(lon) % 2 == 1
                edges += span.near(lon - _SLACK_DEG, lon + _SLACK_DEG)
        for ring, lon1, lat1, lon2, lat2 in edges:
            y1, y2 = (lat1 - lat) * ky, (lat2 - lat) * ky
            if _crosses((lon1 - lon) * kx, y1, (lon2 - lon) * kx, y2):
                crossed[ring] = not crossed[ring]
        inside = crossed[0] and not any(crossed[1:])
        reach = metres / ky * (1 + _SLACK_DEG) + _SLACK_DEG
        across = metres / kx * (1 + _SLACK_DEG) + _SLACK_DEG if kx > 0 else math.inf
        nearest = math.inf
        for near in range(self._band(lat - reach, count), self._band(lat + reach, count) + 1):
            spanned = self.spans[near]
            if spanned is None:
                nearby: Sequence[Edge] = self.bands[near]
            else:
                nearby = [e for span in spanned[0] for e in span.near(lon - across, lon + across)]
                nearby += spanned[1]
            for _, lon1, lat1, lon2, lat2 in nearby:
                x1, y1 = (lon1 - lon) * kx, (lat1 - lat) * ky
                x2, y2 = (lon2 - lon) * kx, (lat2 - lat) * ky
                nearest = min(nearest, _distance_to_segment(x1, y1, x2, y2))
        return nearest if inside else -nearest


def _crosses(x1: float, y1: float, x2: float, y2: float) -> bool:
    """Whether a ray from the origin towards +x crosses the segment (even-odd rule)."""
    if (y1 > 0) == (y2 > 0):
        return False
    return x1 + (0 - y1) * (x2 - x1) / (y2 - y1) > 0


def _contains_origin(pts: Sequence[tuple[float, float]]) -> bool:
    """Ray casting from the origin towards +x (even-odd rule)."""
    inside = False
    n = len(pts)
    for i in range(n):
        if _crosses(*pts[i], *pts[(i + 1) % n]):
            inside = not inside
    return inside


def _distance_to_segment(x1: float, y1: float, x2: float, y2: float) -> float:
    dx, dy = x2 - x1, y2 - y1
    length2 = dx * dx + dy * dy
    u = 0.0 if length2 == 0 else max(0.0, min(1.0, -(x1 * dx + y1 * dy) / length2))
    return math.hypot(x1 + u * dx, y1 + u * dy)


def _distance_to_ring(pts: Sequence[tuple[float, float]]) -> float:
    n = len(pts)
    return min(_distance_to_segment(*pts[i], *pts[(i + 1) % n]) for i in range(n))


Shape = Circle | Polygon


# A fix that states no accuracy is taken as this good (a phone's or tracker's usual few
# metres): judged exact, a vehicle parked on a fence's edge crossed it with every fix's jitter.
UNSTATED_ACCURACY_M = 10.0


def boundary_margin_m(shape: Shape, accuracy_m: float | None) -> float:
    """How far inside or outside a fix must be for ``side_of``: its accuracy, or
    UNSTATED_ACCURACY_M without one, and never more than half a circle's radius (a fix
    reporting 60 m at the centre of a 50 m circle was "too close to tell" for ever)."""
    margin = UNSTATED_ACCURACY_M if accuracy_m is None else accuracy_m
    if isinstance(shape, Circle):
        margin = min(margin, shape.radius_m / 2)
    return margin


def side_of(shape: Shape, lat: float, lon: float, accuracy_m: float) -> str | None:
    """ "in" or "out" when the point is farther than ``accuracy_m`` from the boundary; None
    when it is too close to tell."""
    if isinstance(shape, Polygon) and 0 <= accuracy_m < math.inf:
        if shape.clear_of(lat, lon, accuracy_m):
            return "out"
        margin = shape.margin_within_m(lat, lon, accuracy_m)
    else:
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
