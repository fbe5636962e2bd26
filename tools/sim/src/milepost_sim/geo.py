"""Plain geometry for the simulator: great-circle distance and a local metric frame.

The simulator lays its streets out in meters east (x) and north (y) of a center and turns
them into WGS84 with an equirectangular projection, exact to centimeters over a few
kilometers. Distances between fixes are measured with the haversine formula and the mean
Earth radius, as the worker measures trips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_008.8
_DEG = math.pi / 180.0
# Six decimals (about 0.1 m): what the simulator sends, so JSON and OsmAnd carry the same value.
COORDINATE_DIGITS = 6


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in meters."""
    phi1 = lat1 * _DEG
    phi2 = lat2 * _DEG
    dphi = phi2 - phi1
    dlmb = (lon2 - lon1) * _DEG
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bearing_deg(x1: float, y1: float, x2: float, y2: float) -> float:
    """Compass course (0 north, 90 east) from (x1, y1) to (x2, y2) in the local frame."""
    return round(math.degrees(math.atan2(x2 - x1, y2 - y1)) % 360.0, 1)


@dataclass(frozen=True, slots=True)
class LocalFrame:
    """Meters east and north of (lat, lon), projected to WGS84."""

    lat: float
    lon: float

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        lat = self.lat + y / (EARTH_RADIUS_M * _DEG)
        lon = self.lon + x / (EARTH_RADIUS_M * _DEG * math.cos(self.lat * _DEG))
        return round(lat, COORDINATE_DIGITS), round(lon, COORDINATE_DIGITS)


def mix(*values: int) -> int:
    """A deterministic 64-bit hash of integers (Python's str hash is salted per process)."""
    h = 0x9E3779B97F4A7C15
    for value in values:
        h ^= value & 0xFFFFFFFFFFFFFFFF
        h = (h * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h


def jitter_m(radius_m: float, *key: int) -> tuple[float, float]:
    """A GPS wobble of at most ``radius_m`` meters, the same for the same key."""
    h = mix(*key)
    angle = (h & 0xFFFF) / 0x10000 * 2 * math.pi
    distance = ((h >> 16) & 0xFFFF) / 0x10000 * radius_m
    return distance * math.cos(angle), distance * math.sin(angle)
