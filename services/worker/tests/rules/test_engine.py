"""Each fix-derived alert type, evaluated on plain fixes."""

from __future__ import annotations

from typing import Any

import pytest
from worker_support import LAT0, LON0, at, latlon

from milepost_worker import geo
from milepost_worker.geo import Circle, Polygon, parse_shape
from milepost_worker.motion.machine import MICROS, Fix, StopSegment
from milepost_worker.rules import engine as engine_module
from milepost_worker.rules.engine import (
    GEOFENCE_ENTER,
    GEOFENCE_EXIT,
    IDLE,
    LOW_BATTERY,
    OVERSPEED,
    RuleEngine,
    RuleSpec,
)

S = MICROS


def feed(engine: RuleEngine, fixes: list[Fix], *, moving: bool = True) -> None:
    """Feed ``fixes`` moving, or stopped in a stop that began at the first of them."""
    stop = None if moving else StopSegment(fixes[0].t, fixes[0].lat, fixes[0].lon, fixes[0].t)
    for fix in fixes:
        engine.feed(fix, fix.speed or 0.0, stop)


class TestOverspeed:
    RULE = RuleSpec("r1", OVERSPEED, {"multiplier": 1.1, "min_duration_s": 20}, limit_kmh=50.0)

    def test_created_after_min_duration_with_the_episode_start(self) -> None:
        engine = RuleEngine([self.RULE])
        feed(engine, [at(0, 0, speed=50), at(10, 100, speed=60), at(20, 200, speed=70)])
        assert engine.outputs == {}
        feed(engine, [at(30, 300, speed=65)])
        alert = engine.outputs[("r1", 10 * S)]
        assert alert.details == {
            "limit_kmh": pytest.approx(55.0),
            "max_speed": 70,
            "end_time": None,
        }
        assert (alert.lat, alert.lon) == pytest.approx(latlon(100))

    def test_updated_when_the_episode_ends(self) -> None:
        engine = RuleEngine([self.RULE])
        feed(engine, [at(t, t * 10, speed=s) for t, s in [(10, 60), (20, 90), (30, 60), (40, 40)]])
        alert = engine.outputs[("r1", 10 * S)]
        assert alert.details["max_speed"] == 90
        assert alert.details["end_time"] == "1970-01-01T00:00:40Z"

    def test_short_episode_is_no_alert(self) -> None:
        engine = RuleEngine([self.RULE])
        feed(engine, [at(10, 0, speed=80), at(20, 100, speed=40), at(30, 200, speed=80)])
        assert engine.outputs == {}

    def test_rule_limit_wins_over_the_device_limit(self) -> None:
        rule = RuleSpec("r1", OVERSPEED, {"limit_kmh": 100}, limit_kmh=30.0)
        engine = RuleEngine([rule])
        feed(engine, [at(10, 0, speed=80)])
        assert engine.outputs == {}
        feed(engine, [at(20, 0, speed=101)])
        assert list(engine.outputs) == [("r1", 20 * S)]

    def test_no_limit_anywhere_means_no_alert(self) -> None:
        engine = RuleEngine([RuleSpec("r1", OVERSPEED, {})])
        feed(engine, [at(10, 0, speed=300)])
        assert engine.outputs == {}


CIRCLE = Circle(LAT0, LON0, 500.0)
SQUARE = parse_shape(
    {
        "type": "Polygon",
        "coordinates": [
            [
                [LON0 - 0.01, LAT0 - 0.01],
                [LON0 + 0.01, LAT0 - 0.01],
                [LON0 + 0.01, LAT0 + 0.01],
                [LON0 - 0.01, LAT0 + 0.01],
                [LON0 - 0.01, LAT0 - 0.01],
            ]
        ],
    }
)


class TestGeofence:
    @pytest.mark.parametrize("shape", [CIRCLE, SQUARE], ids=["circle", "polygon"])
    def test_enter_after_dwell(self, shape: Circle | Polygon) -> None:
        rule = RuleSpec("g", GEOFENCE_ENTER, {"geofence_id": "x", "min_dwell_s": 30}, shape=shape)
        engine = RuleEngine([rule])
        feed(engine, [at(0, 3000), at(10, 2000), at(20, 0), at(30, 10), at(40, 20)])
        assert engine.outputs == {}
        feed(engine, [at(50, 30)])
        alert = engine.outputs[("g", 20 * S)]
        assert alert.details == {"geofence_id": "x", "min_dwell_s": 30, "end_time": None}

    def test_the_dwell_ends_when_the_other_side_is_confirmed(self) -> None:
        rule = RuleSpec("g", GEOFENCE_ENTER, {"geofence_id": "x", "min_dwell_s": 30}, shape=CIRCLE)
        engine = RuleEngine([rule])
        feed(engine, [at(0, 3000), at(10, 0), at(40, 0), at(50, 3000), at(60, 3000)])
        assert engine.outputs[("g", 10 * S)].details["end_time"] is None
        feed(engine, [at(80, 3000)])
        assert list(engine.outputs) == [("g", 10 * S)]
        assert engine.outputs[("g", 10 * S)].details["end_time"] == "1970-01-01T00:00:50Z"
        assert engine.pending_keys() == set()

    def test_an_open_dwell_is_pending_and_produced_again_from_a_snapshot(self) -> None:
        rule = RuleSpec("g", GEOFENCE_EXIT, {"geofence_id": "x"}, shape=CIRCLE)
        engine = RuleEngine([rule])
        feed(engine, [at(0, 0), at(10, 5000)])
        assert engine.pending_keys() == {("g", 10 * S)}
        resumed = RuleEngine([rule], engine.snapshot())
        # Too close to the boundary to tell: the open alert is produced all the same.
        feed(resumed, [at(20, 500, accuracy=200)])
        assert resumed.outputs[("g", 10 * S)].details["end_time"] is None

    @pytest.mark.parametrize("shape", [CIRCLE, SQUARE], ids=["circle", "polygon"])
    def test_exit(self, shape: Circle | Polygon) -> None:
        rule = RuleSpec("g", GEOFENCE_EXIT, {"geofence_id": "x"}, shape=shape)
        engine = RuleEngine([rule])
        feed(engine, [at(0, 0), at(10, 100), at(20, 5000), at(30, 6000)])
        assert list(engine.outputs) == [("g", 20 * S)]

    def test_drift_across_the_boundary_within_accuracy_is_ignored(self) -> None:
        rule = RuleSpec("g", GEOFENCE_ENTER, {"geofence_id": "x"}, shape=CIRCLE)
        engine = RuleEngine([rule])
        # 520 m and 480 m from the center, each with 30 m accuracy: never clearly inside.
        feed(
            engine,
            [
                at(0, 600),
                at(10, 520, accuracy=30),
                at(20, 480, accuracy=30),
                at(30, 520, accuracy=30),
                at(40, 485, accuracy=30),
            ],
        )
        assert engine.outputs == {}
        feed(engine, [at(50, 400, accuracy=30)])
        assert list(engine.outputs) == [("g", 50 * S)]

    def test_jitter_at_the_edge_without_a_stated_accuracy_is_no_crossing(self) -> None:
        # Judged exact, a vehicle parked on the edge of a 100 m circle with ±5 m of jitter
        # raised an enter (and an end) on almost every fix: 24 alerts in an hour.
        rule = RuleSpec("g", GEOFENCE_ENTER, {"geofence_id": "x"}, shape=Circle(LAT0, LON0, 100.0))
        engine = RuleEngine([rule])
        feed(engine, [at(0, 300)] + [at(30 * i, 95 if i % 2 else 105) for i in range(1, 120)])
        assert engine.outputs == {}
        feed(engine, [at(3600, 50)])
        assert list(engine.outputs) == [("g", 3600 * S)]

    def test_a_fix_reporting_more_than_a_small_circle_is_judged_at_half_its_radius(self) -> None:
        # Inside by more than 60 m of accuracy, in a 50 m circle: never, so never entered.
        rule = RuleSpec("g", GEOFENCE_ENTER, {"geofence_id": "x"}, shape=Circle(LAT0, LON0, 50.0))
        engine = RuleEngine([rule])
        feed(engine, [at(0, 500, accuracy=60), at(30, 0, accuracy=60), at(60, 5, accuracy=60)])
        assert list(engine.outputs) == [("g", 30 * S)]

    def test_leaving_before_the_dwell_is_no_alert(self) -> None:
        rule = RuleSpec("g", GEOFENCE_ENTER, {"geofence_id": "x", "min_dwell_s": 60}, shape=CIRCLE)
        engine = RuleEngine([rule])
        feed(engine, [at(0, 3000), at(10, 0), at(40, 0), at(50, 3000), at(200, 3000)])
        assert engine.outputs == {}

    def test_first_side_seen_sets_the_state_without_alert(self) -> None:
        rule = RuleSpec("g", GEOFENCE_ENTER, {"geofence_id": "x"}, shape=CIRCLE)
        engine = RuleEngine([rule])
        feed(engine, [at(0, 0), at(10, 10)])
        assert engine.outputs == {}

    def test_a_rule_pointed_at_another_fence_starts_afresh(self) -> None:
        # Parked outside fence x, then the rule is pointed at fence y, where the vehicle has
        # been all along: x's "outside" made the next fix an enter of y it never made.
        watching_x = RuleSpec("g", GEOFENCE_ENTER, {"geofence_id": "x"}, shape=CIRCLE)
        engine = RuleEngine([watching_x])
        feed(engine, [at(0, 3000), at(10, 3000)])
        around_the_vehicle = Circle(*latlon(3000), 500.0)
        watching_y = RuleSpec("g", GEOFENCE_ENTER, {"geofence_id": "y"}, shape=around_the_vehicle)

        resumed = RuleEngine([watching_y], engine.snapshot())
        feed(resumed, [at(20, 3000), at(30, 3000)])

        assert resumed.outputs == {}

    def test_polygon_hole_is_outside(self) -> None:
        d = 0.01
        ring = [
            [LON0 - d, LAT0 - d],
            [LON0 + d, LAT0 - d],
            [LON0 + d, LAT0 + d],
            [LON0 - d, LAT0 + d],
        ]
        hole = [
            [LON0 - d / 2, LAT0 - d / 2],
            [LON0 + d / 2, LAT0 - d / 2],
            [LON0 + d / 2, LAT0 + d / 2],
            [LON0 - d / 2, LAT0 + d / 2],
        ]
        shape = parse_shape({"type": "Polygon", "coordinates": [ring, hole]})
        assert shape.signed_distance_m(LAT0, LON0) < 0
        assert shape.signed_distance_m(LAT0 + 0.75 * d, LON0) > 0

    def test_a_fence_many_rules_watch_is_measured_once_per_fix(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # An organization may have 1,000 rules on one fence; a comb-shaped fence of 10,000
        # vertices costs ~12 ms a measurement, ~12 s a fix when each rule measured it.
        measured = 0

        def side_of(*args: Any) -> str | None:
            nonlocal measured
            measured += 1
            return geo.side_of(*args)

        monkeypatch.setattr(engine_module, "side_of", side_of)
        rules = [
            RuleSpec(f"g{i}", GEOFENCE_ENTER, {"geofence_id": "x"}, shape=SQUARE)
            for i in range(1000)
        ]
        engine = RuleEngine(rules)
        feed(engine, [at(0, 3000), at(10, 0)])
        assert measured == 2
        assert len(engine.outputs) == 1000


class TestIdle:
    RULE = RuleSpec("i", IDLE, {"min_duration_s": 60})

    def test_stopped_with_ignition_on(self) -> None:
        engine = RuleEngine([self.RULE])
        feed(engine, [at(0, 0, ignition=True), at(30, 0), at(60, 0)], moving=False)
        alert = engine.outputs[("i", 0)]
        assert alert.details["end_time"] is None
        feed(engine, [at(90, 0, ignition=False)], moving=False)
        assert engine.outputs[("i", 0)].details == {
            "min_duration_s": 60,
            "end_time": "1970-01-01T00:01:30Z",
            "duration_s": 90.0,
        }

    def test_moving_or_ignition_off_is_not_idle(self) -> None:
        engine = RuleEngine([self.RULE])
        feed(engine, [at(t, 0, ignition=True) for t in range(0, 300, 30)], moving=True)
        feed(engine, [at(t, 0, ignition=False) for t in range(300, 600, 30)], moving=False)
        assert engine.outputs == {}


class TestLowBattery:
    RULE = RuleSpec("b", LOW_BATTERY, {"threshold_pct": 20})

    def test_once_per_episode(self) -> None:
        engine = RuleEngine([self.RULE])
        feed(
            engine,
            [
                at(0, 0, battery=25),
                at(10, 0, battery=19),
                at(20, 0, battery=20),
                at(30, 0, battery=18),
                at(40, 0, battery=50),
                at(50, 0, battery=10),
            ],
        )
        assert sorted(engine.outputs) == [("b", 10 * S), ("b", 50 * S)]
        assert engine.outputs[("b", 10 * S)].details == {"battery_pct": 19, "threshold_pct": 20}

    def test_a_threshold_near_full_still_ends_its_episode_at_a_full_battery(self) -> None:
        # Recovery asked for threshold + 2 %: above 98 % no battery ever got there, and the
        # rule never alerted again.
        engine = RuleEngine([RuleSpec("b", LOW_BATTERY, {"threshold_pct": 99})])
        feed(engine, [at(0, 0, battery=90), at(10, 0, battery=100), at(20, 0, battery=95)])
        assert sorted(engine.outputs) == [("b", 0), ("b", 20 * S)]

    def test_state_survives_a_snapshot(self) -> None:
        engine = RuleEngine([self.RULE])
        feed(engine, [at(0, 0, battery=10)])
        resumed = RuleEngine([self.RULE], engine.snapshot())
        feed(resumed, [at(10, 0, battery=9)])
        assert resumed.outputs == {}
