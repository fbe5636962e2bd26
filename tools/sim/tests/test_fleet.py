"""The simulated fleet: deterministic, on the streets, with the events the demo shows."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from milepost_sim.fixes import SimFix
from milepost_sim.fleet import (
    CYCLE_S,
    OFFLINE_FROM_S,
    OFFLINE_TO_S,
    Fleet,
    Schedule,
    depot_polygon,
    fleet_specs,
)
from milepost_sim.geo import haversine_m
from milepost_worker.geo import Shape, parse_shape

EPOCH = datetime(2026, 3, 2, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def hour() -> dict[str, list[SimFix]]:
    """An hour of a ten-vehicle fleet, one fix every 5 s, by unique_id."""
    fixes = Fleet(fleet_specs(10), 1, EPOCH).history(EPOCH, EPOCH + HOUR, 5, 5)
    by_vehicle: dict[str, list[SimFix]] = defaultdict(list)
    for fix in fixes:
        by_vehicle[fix.unique_id].append(fix)
    return by_vehicle


class TestDeterminism:
    def test_same_seed_gives_the_same_fixes(self) -> None:
        first = Fleet(fleet_specs(4), 9, EPOCH).history(EPOCH, EPOCH + HOUR, 10, 10)
        second = Fleet(fleet_specs(4), 9, EPOCH).history(EPOCH, EPOCH + HOUR, 10, 10)

        assert first == second

    def test_another_seed_gives_other_fixes(self) -> None:
        first = Fleet(fleet_specs(4), 9, EPOCH).history(EPOCH, EPOCH + HOUR, 10, 10)
        second = Fleet(fleet_specs(4), 10, EPOCH).history(EPOCH, EPOCH + HOUR, 10, 10)

        assert first != second

    def test_where_a_vehicle_is_does_not_depend_on_how_often_it_is_asked(self) -> None:
        moment = EPOCH + timedelta(minutes=47, seconds=13)
        asked_often = Fleet(fleet_specs(3), 2, EPOCH)
        asked_once = Fleet(fleet_specs(3), 2, EPOCH)
        asked_often.history(EPOCH, moment, 1, 1)

        assert [v.fix_at(moment) for v in asked_often.vehicles] == [
            v.fix_at(moment) for v in asked_once.vehicles
        ]


class TestMotion:
    def test_vehicles_move_at_road_speeds_without_jumps(
        self, hour: dict[str, list[SimFix]]
    ) -> None:
        for fixes in hour.values():
            for a, b in itertools.pairwise(fixes):
                seconds = (b.fix_time - a.fix_time).total_seconds()
                if seconds <= 5:  # the offline tracker's silences are longer
                    assert haversine_m(a.lat, a.lon, b.lat, b.lon) / seconds * 3.6 < 100

    def test_every_vehicle_drives_and_parks(self, hour: dict[str, list[SimFix]]) -> None:
        for fixes in hour.values():
            assert any(fix.speed == 0 for fix in fixes)
            assert any(fix.speed > 20 for fix in fixes)

    def test_some_vehicles_speed_well_over_the_limit_for_a_minute(
        self, hour: dict[str, list[SimFix]]
    ) -> None:
        longest = 0
        for fixes in hour.values():
            runs = itertools.groupby(fixes, key=lambda fix: fix.speed > 70)
            longest = max([longest, *(len(list(run)) for fast, run in runs if fast)])

        assert longest * 5 >= 60

    def test_vehicles_cross_the_demo_geofence(self, hour: dict[str, list[SimFix]]) -> None:
        depot = parse_shape(depot_polygon())
        crossings = 0
        for fixes in hour.values():
            inside = [depot.signed_distance_m(fix.lat, fix.lon) > 0 for fix in fixes]
            crossings += sum(a != b for a, b in itertools.pairwise(inside))

        assert inside_at_start(hour, depot)
        assert crossings >= 4


def inside_at_start(hour: dict[str, list[SimFix]], depot: Shape) -> bool:
    return all(depot.signed_distance_m(fixes[0].lat, fixes[0].lon) > 0 for fixes in hour.values())


class TestRoles:
    def test_the_phones_send_battery_and_the_trackers_ignition(
        self, hour: dict[str, list[SimFix]]
    ) -> None:
        specs = {spec.unique_id: spec for spec in fleet_specs(10)}

        for unique_id, fixes in hour.items():
            key = "battery" if specs[unique_id].transport == "osmand" else "ignition"
            assert all(key in fix.attributes for fix in fixes)

    def test_the_low_battery_phone_falls_below_20_percent(
        self, hour: dict[str, list[SimFix]]
    ) -> None:
        batteries = [fix.attributes["battery"] for fix in hour["demo-002"]]

        assert min(batteries) < 20 < max(batteries)

    def test_the_offline_tracker_is_silent_for_minutes_each_cycle(
        self, hour: dict[str, list[SimFix]]
    ) -> None:
        seconds = [(fix.fix_time - EPOCH).total_seconds() for fix in hour["demo-003"]]

        assert not any(OFFLINE_FROM_S <= s % CYCLE_S < OFFLINE_TO_S for s in seconds)
        gaps = [b - a for a, b in itertools.pairwise(seconds)]
        assert max(gaps) >= OFFLINE_TO_S - OFFLINE_FROM_S


class TestWorkingDay:
    def test_a_day_is_driven_in_working_hours_only(self) -> None:
        schedule = Schedule(park_s=(600, 2400), hours=(6.5 * 3600, 19 * 3600))
        fleet = Fleet(fleet_specs(3), 1, EPOCH, schedule)

        fixes = fleet.history(EPOCH, EPOCH + timedelta(days=1), 10, 300)

        moving = [fix.fix_time for fix in fixes if fix.speed > 0]
        assert min(moving) >= EPOCH + timedelta(hours=6.5)
        assert max(fix.fix_time for fix in fixes) < EPOCH + timedelta(days=1)
        # Parked vehicles report every five minutes: the night costs little.
        night = [f for f in fixes if f.fix_time < EPOCH + timedelta(hours=6)]
        assert len([f for f in night if f.unique_id == "demo-001"]) == 72
