"""The scripted drive: deterministic, and its expectations are what the worker computes.

The expectations come from the script's construction; the worker's pure timeline replay (the
motion machine and the rules engine, with rule params validated as the api stores them) is
the independent check.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from milepost_common.domain.alert_rules.schemas import validate_params
from milepost_common.domain.alerts.models import AlertType
from milepost_ingest.osmand import decode_params
from milepost_sim.geo import haversine_m
from milepost_sim.script import GEOFENCE_CLEARANCE_M, Script, scripted_drive
from milepost_worker.geo import parse_shape
from milepost_worker.motion.machine import Fix, MotionParams
from milepost_worker.rules.engine import RuleSpec
from milepost_worker.timeline import Replay, replay

START = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)
SEEDS = range(30)


def micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def worker_replay(script: Script) -> Replay:
    """What the worker makes of the script's fixes, for the rules the script describes."""
    geofence_id = str(uuid.uuid4())
    geofence = script.geofence.to_api()
    shape = parse_shape(geofence["geometry"], geofence["radius_m"])
    rules = []
    for body in script.alert_rules(geofence_id):
        kind = AlertType(body["type"])
        params = validate_params(kind, body["params"]).model_dump(mode="json")
        rules.append(RuleSpec(id=kind.value, type=kind.value, params=params, shape=shape))
    fixes = [
        Fix(micros(f.fix_time), f.lat, f.lon, f.speed, f.accuracy, dict(f.attributes), f.course)
        for f in script.fixes
    ]
    result = replay(None, fixes, MotionParams(), rules)
    assert result is not None
    return result


class TestDeterminism:
    def test_same_seed_gives_the_same_drive(self) -> None:
        assert scripted_drive(7, START) == scripted_drive(7, START)

    def test_another_seed_gives_another_drive(self) -> None:
        assert scripted_drive(7, START).fixes != scripted_drive(8, START).fixes

    def test_start_only_shifts_the_times(self) -> None:
        later = START + timedelta(days=1)

        first, second = scripted_drive(3, START), scripted_drive(3, later)

        assert [(f.lat, f.lon, f.speed) for f in first.fixes] == [
            (f.lat, f.lon, f.speed) for f in second.fixes
        ]
        assert second.fixes[0].fix_time - first.fixes[0].fix_time == timedelta(days=1)

    def test_a_naive_start_is_refused(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            scripted_drive(1, datetime(2026, 3, 2, 7, 30))  # noqa: DTZ001


class TestExpectationsMatchTheWorker:
    @pytest.mark.parametrize("seed", SEEDS)
    def test_trips(self, seed: int) -> None:
        script = scripted_drive(seed, START)

        trips = worker_replay(script).trips

        assert [(t.start_t, t.end_t, t.closed) for t in trips] == [
            (micros(t.start_time), micros(t.end_time), True) for t in script.expected_trips
        ]
        for trip, expected in zip(trips, script.expected_trips, strict=True):
            assert (trip.start_lat, trip.start_lon) == (expected.start_lat, expected.start_lon)
            assert (trip.end_lat, trip.end_lon) == (expected.end_lat, expected.end_lon)
            assert trip.distance_m == pytest.approx(expected.distance_m, abs=1e-6)
            assert trip.max_speed == expected.max_speed

    @pytest.mark.parametrize("seed", SEEDS)
    def test_stops(self, seed: int) -> None:
        script = scripted_drive(seed, START)

        stops = worker_replay(script).stops

        assert [(s.start_t, s.end_t if s.closed else None, s.lat, s.lon) for s in stops] == [
            (micros(s.start_time), micros(s.end_time) if s.end_time else None, s.lat, s.lon)
            for s in script.expected_stops
        ]

    @pytest.mark.parametrize("seed", SEEDS)
    def test_alerts(self, seed: int) -> None:
        script = scripted_drive(seed, START)

        alerts = sorted(worker_replay(script).alerts.values(), key=lambda a: a.occurred_at)

        assert [(a.type, a.occurred_at, a.lat, a.lon) for a in alerts] == [
            (e.type, micros(e.occurred_at), e.lat, e.lon) for e in script.expected_alerts
        ]
        for alert, expected in zip(alerts, script.expected_alerts, strict=True):
            assert {k: alert.details[k] for k in expected.details} == dict(expected.details)


class TestUnambiguous:
    """The margins the expectations rely on, so a small change in the worker's rule or a
    rounding at the door cannot flip them."""

    @pytest.mark.parametrize("seed", SEEDS)
    def test_every_driving_leg_is_well_over_the_trip_distance(self, seed: int) -> None:
        script = scripted_drive(seed, START)

        for phase in ("drive1", "drive2"):
            first, last = script.phases[phase]
            legs = itertools.pairwise(script.fixes[first - 1 : last + 1])
            assert min(haversine_m(a.lat, a.lon, b.lat, b.lon) for a, b in legs) > 230

    @pytest.mark.parametrize("seed", SEEDS)
    def test_the_geofence_boundary_keeps_clear_of_every_fix(self, seed: int) -> None:
        script = scripted_drive(seed, START)
        fence = script.geofence

        margins = [
            abs(haversine_m(fence.lat, fence.lon, f.lat, f.lon) - fence.radius_m)
            for f in script.fixes
        ]

        assert min(margins) >= GEOFENCE_CLEARANCE_M

    def test_speeds_are_clearly_on_one_side_of_the_limit(self) -> None:
        script = scripted_drive(11, START)

        speeds = {f.speed for f in script.fixes if f.speed > 0}

        assert all(s < 47 or s > 85 for s in speeds)
        assert script.speed_limit_kmh == 50


class TestEncodings:
    def test_osmand_parameters_decode_to_the_json_item(self) -> None:
        script = scripted_drive(5, START)
        received = START + timedelta(hours=2)

        for fix in script.fixes[::7]:
            item: dict[str, Any] = decode_params(fix.to_osmand().items(), received).item
            expected = fix.to_item()

            assert item["fix_time"] == fix.fix_time
            assert (item["lat"], item["lon"]) == (expected["lat"], expected["lon"])
            assert item["speed"] == pytest.approx(expected["speed"], abs=1e-6)
            assert item["attributes"] == expected["attributes"]

    def test_alert_rules_name_the_geofence(self) -> None:
        script = scripted_drive(5, START)

        rules = {rule["type"]: rule for rule in script.alert_rules("g-1", ["v-1"])}

        assert set(rules) == {"overspeed", "geofence_exit", "geofence_enter", "low_battery"}
        assert rules["geofence_exit"]["params"] == {"geofence_id": "g-1"}
        assert all(rule["vehicle_ids"] == ["v-1"] for rule in rules.values())
