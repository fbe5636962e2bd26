"""A geofence's side of a fix: the polygon's box answers for fixes far from it, exactly as
the full measure would."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from milepost_worker.geo import Polygon, parse_shape, side_of

LAT0, LON0 = 52.52, 13.40


def measured_side(shape: Polygon, lat: float, lon: float, accuracy_m: float) -> str | None:
    """The side as the engine decided it before the box: from the signed distance alone."""
    margin = shape.signed_distance_m(lat, lon)
    return "in" if margin > accuracy_m else "out" if -margin > accuracy_m else None


def ring(center_lat: float, center_lon: float, radii: list[float]) -> list[list[float]]:
    """A star-shaped closed ring around the center, one vertex per radius (degrees)."""
    n = len(radii)
    points = [
        [
            center_lon + r * math.cos(2 * math.pi * i / n),
            center_lat + r * math.sin(2 * math.pi * i / n),
        ]
        for i, r in enumerate(radii)
    ]
    return [*points, points[0]]


polygons = st.builds(
    lambda outer, hole: parse_shape(
        {
            "type": "Polygon",
            "coordinates": [ring(LAT0, LON0, outer)] + ([ring(LAT0, LON0, hole)] if hole else []),
        }
    ),
    st.lists(st.floats(0.002, 0.05), min_size=3, max_size=12),
    st.one_of(st.none(), st.lists(st.floats(0.0002, 0.0015), min_size=3, max_size=6)),
)


@given(
    shape=polygons,
    dlat=st.floats(-0.2, 0.2),
    dlon=st.floats(-0.2, 0.2),
    accuracy_m=st.one_of(st.floats(0, 5_000), st.just(math.nan), st.floats(-50, 0)),
)
def test_the_side_is_the_measured_one(
    shape: Polygon, dlat: float, dlon: float, accuracy_m: float
) -> None:
    lat, lon = LAT0 + dlat, LON0 + dlon

    assert side_of(shape, lat, lon, accuracy_m) == measured_side(shape, lat, lon, accuracy_m)


def test_a_far_fix_reads_no_vertex() -> None:
    """Far from a fence of 10,000 vertices, the box answers: no vertex is projected."""
    big = parse_shape({"type": "Polygon", "coordinates": [ring(LAT0, LON0, [0.01] * 10_000)]})
    assert isinstance(big, Polygon)
    far = (LAT0 + 0.5, LON0)

    assert side_of(big, *far, 10.0) == "out"
    assert big.clear_of(*far, 10.0)
    assert not big.clear_of(LAT0 + 0.0101, LON0, 50.0)  # 11 m past its top: the box cannot tell
