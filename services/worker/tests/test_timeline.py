"""Arrival order does not matter: random batches in random order give the in-order result."""

from __future__ import annotations

import math
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from worker_support import LAT0, LON0, MemoryStore, at

from milepost_worker.geo import Circle, parse_shape
from milepost_worker.motion.machine import Fix, MotionParams
from milepost_worker.rules.engine import (
    GEOFENCE_ENTER,
    GEOFENCE_EXIT,
    IDLE,
    LOW_BATTERY,
    OVERSPEED,
    RuleSpec,
)

RULES = [
    RuleSpec("over", OVERSPEED, {"multiplier": 1.0, "min_duration_s": 20}, limit_kmh=60.0),
    RuleSpec(
        "enter",
        GEOFENCE_ENTER,
        {"geofence_id": "c", "min_dwell_s": 30},
        shape=Circle(LAT0, LON0 + 0.01, 400.0),
    ),
    RuleSpec(
        "exit",
        GEOFENCE_EXIT,
        {"geofence_id": "p", "min_dwell_s": 0},
        shape=parse_shape(
            {
                "type": "Polygon",
                "coordinates": [
                    [
                        [LON0 - 0.004, LAT0 - 0.004],
                        [LON0 + 0.004, LAT0 - 0.004],
                        [LON0 + 0.004, LAT0 + 0.004],
                        [LON0 - 0.004, LAT0 + 0.004],
                    ]
                ],
            }
        ),
    ),
    RuleSpec("idle", IDLE, {"min_duration_s": 60}),
    RuleSpec("battery", LOW_BATTERY, {"threshold_pct": 30}),
]


@st.composite
def drives(draw: st.DrawFn) -> list[Fix]:
    """Parking with drift, driving at varying speed and heading, gaps, GPS outliers and
    relocations (one fix, or all from there on, tens of kilometres away); ignition and
    battery."""
    t, east, north = 0.0, 0.0, 0.0
    battery = 60.0
    fixes: list[Fix] = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["park", "drive", "gap", "jump"]))
        steps = draw(st.integers(1, 40))
        interval = draw(st.sampled_from([5, 10, 30]))
        heading = draw(st.floats(0, 2 * math.pi))
        speed_mps = draw(st.sampled_from([3.0, 12.0, 25.0]))
        ignition = draw(st.booleans())
        if kind == "gap":
            # Silences short and long; back near where it was (a tracker that slept) or far.
            t += draw(st.sampled_from([200.0, 600.0, 1800.0, 4000.0, 9000.0]))
            reach = draw(st.sampled_from([50.0, 150.0, 20_000.0]))
            east += draw(st.floats(-reach, reach))
            north += draw(st.floats(-reach, reach))
            steps = 1
        if kind == "jump":
            t += interval
            far = draw(st.sampled_from([30_000.0, 300_000.0]))
            fixes.append(at(t, east + far, north, accuracy=5.0, battery=battery))
            if draw(st.booleans()):  # the vehicle is there from now on
                east += far
            continue
        for _ in range(steps):
            t += interval
            if kind == "drive":
                east += math.cos(heading) * speed_mps * interval
                north += math.sin(heading) * speed_mps * interval
                reported: float | None = speed_mps * 3.6
            else:
                east += draw(st.floats(-15, 15))
                north += draw(st.floats(-15, 15))
                reported = draw(st.sampled_from([None, 0.0]))
            battery = max(0.0, min(100.0, battery + draw(st.sampled_from([-7.0, -1.0, 0.0, 4.0]))))
            fixes.append(
                at(t, east, north, speed=reported, accuracy=5.0, ignition=ignition, battery=battery)
            )
    return fixes


def outcome(store: MemoryStore) -> dict[str, Any]:
    return {
        "trips": {k: v.to_json() for k, v in store.trips.items()},
        "stops": {k: v.to_json() for k, v in store.stops.items()},
        "alerts": {k: (v.type, v.lat, v.lon, v.details) for k, v in store.alerts.items()},
        # What the next batch starts from.
        "checkpoints": {k: v.to_json() for k, v in store.checkpoints.items()},
        "state": store.state.to_json() if store.state else None,
    }


# Checkpoint grids: the worker's (hours: only settled stops here), and cells of a few fixes.
GRIDS = st.sampled_from([None, 45.0, 300.0])


def in_order(fixes: list[Fix], grid: float | None = None) -> MemoryStore:
    store = MemoryStore(MotionParams(), RULES, checkpoint_every_s=grid)
    store.process(store.ingest(fixes))
    return store


class TestOrderIndependence:
    @given(drives(), st.integers(1, 8), st.randoms(use_true_random=False), GRIDS)
    @settings(max_examples=150)
    def test_random_batches_in_random_order_give_the_in_order_result(
        self, fixes: list[Fix], batches: int, rnd: random.Random, grid: float | None
    ) -> None:
        expected = in_order(fixes, grid)
        shuffled = list(fixes)
        rnd.shuffle(shuffled)
        cuts = sorted(rnd.sample(range(1, len(shuffled)), min(batches - 1, len(shuffled) - 1)))
        store = MemoryStore(MotionParams(), RULES, checkpoint_every_s=grid)
        for lo, hi in zip([0, *cuts], [*cuts, len(shuffled)], strict=False):
            store.process(store.ingest(shuffled[lo:hi]))
        assert outcome(store) == outcome(expected)

    @given(drives(), st.integers(1, 30), GRIDS)
    def test_batches_in_order_continue_from_the_state(
        self, fixes: list[Fix], size: int, grid: float | None
    ) -> None:
        expected = in_order(fixes, grid)
        store = MemoryStore(MotionParams(), RULES, checkpoint_every_s=grid)
        for lo in range(0, len(fixes), size):
            store.process(store.ingest(fixes[lo : lo + size]))
        assert outcome(store) == outcome(expected)
        assert sorted(store.created) == sorted(expected.alerts)

    @given(drives(), st.randoms(use_true_random=False))
    def test_redelivered_batches_change_nothing(self, fixes: list[Fix], rnd: random.Random) -> None:
        expected = in_order(fixes)
        store = MemoryStore(MotionParams(), RULES)
        store.process(store.ingest(fixes))
        again = rnd.sample(fixes, max(1, len(fixes) // 3))
        store.process(again)  # a redelivered task sees positions that are already stored
        assert outcome(store) == outcome(expected)
