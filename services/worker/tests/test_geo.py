"""A geofence's side of a fix: the polygon's box answers for fixes far from it, and the edges
in the bands of latitude near a fix for the others, exactly as the full measure would."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milepost_worker import geo
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
    st.lists(st.floats(0.002, 0.05), min_size=3, max_size=60),
    st.one_of(st.none(), st.lists(st.floats(0.0002, 0.0015), min_size=3, max_size=20)),
)


@given(
    shape=polygons,
    dlat=st.one_of(st.floats(-0.2, 0.2), st.floats(-0.06, 0.06), st.floats(-0.002, 0.002)),
    dlon=st.one_of(st.floats(-0.2, 0.2), st.floats(-0.06, 0.06), st.floats(-0.002, 0.002)),
    accuracy_m=st.one_of(st.floats(0, 5_000), st.just(math.nan), st.floats(-50, 0)),
)
def test_the_side_is_the_measured_one(
    shape: Polygon, dlat: float, dlon: float, accuracy_m: float
) -> None:
    lat, lon = LAT0 + dlat, LON0 + dlon

    assert side_of(shape, lat, lon, accuracy_m) == measured_side(shape, lat, lon, accuracy_m)


grid = st.integers(-5, 5).map(lambda step: step * 0.001)
# Vertices and fixes on one grid: horizontal edges, fixes on vertices and edges, repeated
# vertices, crossing rings; every tie between a fix and an edge that the bands must keep.
grid_polygons = st.lists(st.lists(st.tuples(grid, grid), min_size=3, max_size=10), max_size=3).map(
    lambda holes: parse_shape(
        {
            "type": "Polygon",
            "coordinates": [
                [[LON0 + x, LAT0 + y] for x, y in [*ring, ring[0]]]
                for ring in [[(-0.004, -0.004), (0.004, -0.004), (0.0, 0.004)], *holes]
            ],
        }
    )
)


@given(
    shape=grid_polygons,
    dlat=grid,
    dlon=grid,
    accuracy_m=st.sampled_from([0.0, 1.0, 111.19, 111.2, 500.0]),
)
def test_on_a_grid_the_side_is_the_measured_one(
    shape: Polygon, dlat: float, dlon: float, accuracy_m: float
) -> None:
    lat, lon = LAT0 + dlat, LON0 + dlon

    assert side_of(shape, lat, lon, accuracy_m) == measured_side(shape, lat, lon, accuracy_m)


@st.composite
def combs(draw: st.DrawFn) -> tuple[Polygon, list[float]]:
    """A comb: a spine with many teeth, every tooth's sides crossing every band of latitude
    above the spine (the bands sort those by longitude); teeth leaning a little, a hole in
    the spine or not. Also the longitudes of its teeth's sides, for fixes on them."""
    teeth = draw(st.integers(20, 120))
    pitch, width = 0.0002, draw(st.sampled_from([0.00005, 0.0001, 0.00015]))
    spine, top = 0.002, 0.01
    points: list[tuple[float, float]] = [(0.0, 0.0), (teeth * pitch, 0.0)]
    sides: list[float] = []
    for i in reversed(range(teeth)):
        right = (i + 1) * pitch
        lean = draw(st.sampled_from([0.0, 0.00002, -0.00004]))
        points += [(right, spine), (right + lean, top), (right - width + lean, top)]
        points += [(right - width, spine)]
        sides += [right, right - width]
    points.append((0.0, spine))
    rings = [[[LON0 + x, LAT0 + y] for x, y in [*points, points[0]]]]
    if draw(st.booleans()):
        hole = [(0.0001, 0.0005), (0.001, 0.0005), (0.001, 0.0015), (0.0001, 0.0015)]
        rings.append([[LON0 + x, LAT0 + y] for x, y in [*hole, hole[0]]])
    shape = parse_shape({"type": "Polygon", "coordinates": rings})
    assert isinstance(shape, Polygon)
    return shape, sides


@settings(max_examples=300)
@given(
    comb=combs(),
    dlat=st.one_of(st.floats(-0.001, 0.011), st.sampled_from([0.0, 0.002, 0.005, 0.01])),
    where=st.one_of(
        st.floats(-0.001, 0.025),
        st.integers(0, 239),
        st.tuples(st.integers(0, 239), st.floats(-0.00006, 0.00006)),
    ),
    accuracy_m=st.sampled_from([0.0, 0.0, 1.0, 10.0, 60.0, 500.0]),
)
def test_across_a_comb_the_side_is_the_measured_one(
    comb: tuple[Polygon, list[float]],
    dlat: float,
    where: float | int | tuple[int, float],
    accuracy_m: float,
) -> None:
    shape, sides = comb
    # A float: anywhere around the comb; an integer: on one of its teeth's sides; a pair:
    # within a few metres of one.
    if isinstance(where, tuple):
        dlon = sides[where[0] % len(sides)] + where[1]
    else:
        dlon = sides[where % len(sides)] if isinstance(where, int) else where
    lat, lon = LAT0 + dlat, LON0 + dlon

    assert side_of(shape, lat, lon, accuracy_m) == measured_side(shape, lat, lon, accuracy_m)


def test_a_fix_in_a_comb_reads_the_teeth_near_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A comb of 10,000 vertices, every tooth crossing every band: a fix's side comes from the
    few teeth near its longitude, not from the 5,000 sides in its band (~6 ms a fix, for
    every fix of the organization's vehicles)."""
    teeth, pitch, width = 2_500, 0.00004, 0.00002
    points = [(0.0, 0.0), (teeth * pitch, 0.0)]
    for i in reversed(range(teeth)):
        right = (i + 1) * pitch
        points += [(right, 0.002), (right, 0.01), (right - width, 0.01), (right - width, 0.002)]
    points.append((0.0, 0.002))
    big = parse_shape(
        {
            "type": "Polygon",
            "coordinates": [[[LON0 + x, LAT0 + y] for x, y in [*points, points[0]]]],
        }
    )
    assert isinstance(big, Polygon)
    in_a_tooth, in_a_gap = LON0 + 1000 * pitch - width / 2, LON0 + 1000 * pitch + width / 2
    measured: list[int] = []
    for name in ("_crosses", "_distance_to_segment"):
        real = getattr(geo, name)
        monkeypatch.setattr(geo, name, lambda *a, real=real: measured.append(1) or real(*a))

    assert side_of(big, LAT0 + 0.00605, in_a_tooth, 0.1) == "in"
    assert side_of(big, LAT0 + 0.00605, in_a_gap, 0.1) == "out"
    assert len(measured) < 100


def test_a_fix_near_a_hole_straying_out_of_the_outer_ring_is_near_the_fence() -> None:
    """The schema does not make holes lie inside the outer ring: the box must hold them."""
    outer = ring(LAT0, LON0, [0.004] * 4)
    stray = [[LON0, LAT0], [LON0 + 0.006, LAT0], [LON0, LAT0 + 0.001], [LON0, LAT0]]
    shape = parse_shape({"type": "Polygon", "coordinates": [outer, stray]})
    assert isinstance(shape, Polygon)
    on_its_corner = (LAT0, LON0 + 0.006)

    assert side_of(shape, *on_its_corner, 0.0) is None
    assert side_of(shape, *on_its_corner, 0.0) == measured_side(shape, *on_its_corner, 0.0)


def test_a_far_fix_reads_no_vertex() -> None:
    """Far from a fence of 10,000 vertices, the box answers: no vertex is projected."""
    big = parse_shape({"type": "Polygon", "coordinates": [ring(LAT0, LON0, [0.01] * 10_000)]})
    assert isinstance(big, Polygon)
    far = (LAT0 + 0.5, LON0)

    assert side_of(big, *far, 10.0) == "out"
    assert big.clear_of(*far, 10.0)
    assert not big.clear_of(LAT0 + 0.0101, LON0, 50.0)  # 11 m past its top: the box cannot tell


def test_a_fix_near_a_fence_reads_the_edges_near_its_latitude() -> None:
    """Inside a fence of 10,000 vertices, a fix's side comes from one band of latitude for the
    crossings and the bands within its accuracy for the distance: a few hundred edges."""
    big = parse_shape({"type": "Polygon", "coordinates": [ring(LAT0, LON0, [0.01] * 10_000)]})
    assert isinstance(big, Polygon)

    assert len(big.bands) == 100
    assert max(map(len, big.bands)) < 10_000 / 10
    assert side_of(big, LAT0, LON0, 10.0) == "in"
    assert side_of(big, LAT0 + 0.0099, LON0, 10.0) == "in"  # 11 m inside its top
    assert side_of(big, LAT0 + 0.01, LON0, 10.0) is None
