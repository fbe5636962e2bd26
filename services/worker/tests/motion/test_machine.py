"""Golden fixtures of the distance-window rule, and properties of the machine."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from worker_support import at, latlon

from milepost_worker.geo import haversine_m
from milepost_worker.motion.machine import (
    MICROS,
    Fix,
    MotionMachine,
    MotionParams,
    StopSegment,
    TripSegment,
)

S = MICROS


def run(fixes: list[Fix], params: MotionParams | None = None) -> MotionMachine:
    machine = MotionMachine(params or MotionParams())
    for fix in fixes:
        machine.feed(fix)
    return machine


def parked(t_from: int, t_to: int, east: float = 0.0, step: int = 10) -> list[Fix]:
    return [at(t, east) for t in range(t_from, t_to + 1, step)]


def drive(t_from: int, legs: int, east_from: float, step_m: float, step_s: int = 10) -> list[Fix]:
    return [at(t_from + step_s * i, east_from + step_m * i) for i in range(legs)]


def kinds(machine: MotionMachine) -> list[str]:
    return ["trip" if isinstance(s, TripSegment) else "stop" for s in machine.segments]


class TestStopConfirmation:
    # Parked at 0 m until 290 s, 30 legs of 90 m every 10 s (310..600 s, to 2700 m), parked.
    FIXES = parked(0, 290) + drive(310, 30, 90.0, 90.0) + parked(610, 990, 2700.0)

    def test_stop_confirmed_only_after_min_duration(self) -> None:
        # At 770 s the oldest window fix (570 s, 2430 m) is still >= 200 m away: moving.
        before = run([f for f in self.FIXES if f.t <= 770 * S])
        assert before.moving
        after = run([f for f in self.FIXES if f.t <= 780 * S])
        assert not after.moving
        assert after.anchor_t == 780 * S

    def test_trip_ends_and_stop_starts_at_the_oldest_window_fix(self) -> None:
        machine = run(self.FIXES)
        assert kinds(machine) == ["stop", "trip", "stop"]
        first, trip, stop = machine.segments
        assert isinstance(first, StopSegment)
        assert isinstance(trip, TripSegment)
        assert isinstance(stop, StopSegment)
        assert (first.start_t, first.end_t, first.closed) == (0, 290 * S, True)
        # The start moves back over the 290 -> 310 s leg (4.5 m/s > 200/180 m/s).
        assert (trip.start_t, trip.end_t, trip.closed) == (290 * S, 580 * S, True)
        assert trip.distance_m == pytest.approx(2520.0, abs=0.01)
        assert trip.duration_s == 290.0
        assert trip.avg_speed == pytest.approx(2520.0 / 290.0 * 3.6, abs=0.01)
        assert trip.max_speed == pytest.approx(32.4, abs=0.01)  # 90 m / 10 s
        assert (stop.start_t, stop.end_t, stop.closed) == (580 * S, 990 * S, False)
        assert (stop.lat, stop.lon) == pytest.approx(latlon(2520.0))
        assert stop.duration_s == 410.0


class TestDrift:
    def test_drift_within_min_distance_is_no_trip(self) -> None:
        # An hour of fixes wandering in a 90 m box (< 130 m apart), sometimes fast.
        fixes = [at(t, 45 * math.sin(t / 7.0), 45 * math.cos(t / 11.0)) for t in range(0, 3600, 5)]
        machine = run(fixes)
        assert kinds(machine) == ["stop"]
        stop = machine.segments[0]
        assert (stop.start_t, stop.end_t, stop.closed) == (0, 3595 * S, False)


class TestTripStart:
    def test_start_moved_back_over_fast_legs(self) -> None:
        # Parked at 0 m, then 3, 20, 60, 120, 190, 270 m: the 270 m fix (160 s) starts a trip.
        # Legs back from 150 s: 7, 6, 4, 1.7 m/s (> 1.11): moved back to 110 s; 0.3 m/s stops it.
        east = [3.0, 20.0, 60.0, 120.0, 190.0, 270.0]
        fixes = parked(0, 100) + [at(110 + 10 * i, e) for i, e in enumerate(east)]
        machine = run(fixes)
        assert kinds(machine) == ["stop", "trip"]
        stop, trip = machine.segments
        assert isinstance(trip, TripSegment)
        assert (stop.end_t, stop.closed) == (110 * S, True)
        assert (trip.start_t, trip.end_t, trip.closed) == (110 * S, 160 * S, False)
        assert (trip.start_lat, trip.start_lon) == pytest.approx(latlon(3.0))
        assert trip.distance_m == pytest.approx(267.0, abs=0.01)
        assert machine.anchor_t == 110 * S

    def test_start_at_the_fix_itself_when_the_anchor_is_the_previous_fix(self) -> None:
        machine = run([at(0, 0), at(10, 250)])
        assert kinds(machine) == ["stop", "trip"]
        trip = machine.segments[1]
        assert isinstance(trip, TripSegment)
        assert (trip.start_t, trip.end_t, trip.distance_m) == (10 * S, 10 * S, 0.0)


class TestGap:
    def test_gap_trip(self) -> None:
        # 20 km in 7300 s (2.7 m/s): a trip L -> P, then stopped at P.
        fixes = [*parked(0, 100), at(7400, 20000), *parked(7410, 7600, 20000)]
        machine = run(fixes)
        assert kinds(machine) == ["stop", "trip", "stop"]
        first, trip, stop = machine.segments
        assert isinstance(trip, TripSegment)
        assert (first.start_t, first.end_t) == (0, 100 * S)
        assert (trip.start_t, trip.end_t, trip.closed) == (100 * S, 7400 * S, True)
        direct = haversine_m(*latlon(0.0), *latlon(20_000.0))  # one leg, both ends
        assert direct == pytest.approx(20_000.0, abs=0.05)
        assert trip.distance_m == pytest.approx(direct, abs=1e-6)
        assert trip.avg_speed == pytest.approx(direct / 7300.0 * 3.6, abs=1e-6)
        assert (stop.start_t, stop.end_t, stop.closed) == (7400 * S, 7600 * S, False)
        assert machine.anchor_t == 7400 * S

    def test_gap_ends_the_open_trip_at_the_last_fix(self) -> None:
        fixes = parked(0, 100) + drive(120, 20, 90.0, 90.0) + [at(4000, 30_000)]
        machine = run(fixes)
        assert kinds(machine) == ["stop", "trip", "trip", "stop"]
        trip, gap_trip = machine.segments[1], machine.segments[2]
        assert isinstance(trip, TripSegment)
        assert isinstance(gap_trip, TripSegment)
        assert (trip.end_t, trip.closed) == (310 * S, True)
        assert trip.distance_m == pytest.approx(1800.0, abs=0.01)
        assert (gap_trip.start_t, gap_trip.end_t) == (310 * S, 4000 * S)

    def test_slow_gap_goes_through_the_window_rule(self) -> None:
        # 2 km in 2 h (0.28 m/s): not a gap trip; a trip starts at L and stops later.
        fixes = parked(0, 100) + parked(7300, 7700, 2000.0)
        machine = run(fixes)
        assert kinds(machine) == ["stop", "trip", "stop"]
        trip, stop = machine.segments[1], machine.segments[2]
        assert isinstance(trip, TripSegment)
        assert trip.start_t == 100 * S
        # The window reaches back to L (100 s) until 7310 s is older than 180 s before L.
        assert trip.end_t == 7300 * S
        assert stop.start_t == 7300 * S


class TestJump:
    def test_one_fix_far_away_is_kept_aside(self) -> None:
        # Parked; one fix 300 km east 10 s later (a GPS outlier); parked again where it was.
        fixes = [*parked(0, 300), at(310, 300_000.0), *parked(320, 900)]
        machine = run(fixes)
        assert kinds(machine) == ["stop"]
        (stop,) = machine.segments
        assert (stop.start_t, stop.end_t) == (0, 900 * S)

    def test_two_fixes_that_agree_move_the_device_there(self) -> None:
        # The first fix was the wrong one (a cold start 50 km off): the next two agree.
        fixes = [at(0, 50_000.0), *parked(10, 600)]
        machine = run(fixes)
        assert kinds(machine) == ["stop", "stop"]
        wrong, right = machine.segments
        assert (wrong.start_t, wrong.end_t, wrong.closed) == (0, 0, True)
        assert (right.start_t, right.end_t, right.closed) == (0, 600 * S, False)
        assert (right.lat, right.lon) == pytest.approx(latlon(0.0))

    def test_a_fast_drive_below_the_limit_is_a_trip(self) -> None:
        # 300 km/h (a train, an autobahn): implausible only above max_speed (400 km/h).
        fixes = parked(0, 300) + drive(310, 30, 830.0, 830.0) + parked(620, 1000, 24_900.0)
        assert kinds(run(fixes)) == ["stop", "trip", "stop"]


class TestSeveralTripsAndStops:
    def test_drive_of_several_trips_and_stops(self) -> None:
        fixes = (
            parked(0, 290)
            + drive(310, 30, 90.0, 90.0)
            + parked(610, 1000, 2700.0)
            + drive(1020, 30, 2610.0, -90.0)
            + parked(1320, 1800, 0.0)
        )
        machine = run(fixes)
        assert kinds(machine) == ["stop", "trip", "stop", "trip", "stop"]
        s1, t1, s2, t2, s3 = machine.segments
        assert isinstance(t1, TripSegment)
        assert isinstance(t2, TripSegment)
        assert (s1.start_t, s1.end_t) == (0, 290 * S)
        assert (t1.start_t, t1.end_t) == (290 * S, 580 * S)
        assert (s2.start_t, s2.end_t) == (580 * S, 1000 * S)
        assert (t2.start_t, t2.end_t) == (1000 * S, 1290 * S)
        assert t2.distance_m == pytest.approx(2520.0, abs=0.01)
        assert (s3.start_t, s3.end_t, s3.closed) == (1290 * S, 1800 * S, False)
        assert [s.closed for s in (s1, t1, s2, t2)] == [True] * 4


@st.composite
def wandering_fixes(draw: st.DrawFn) -> list[Fix]:
    count = draw(st.integers(1, 150))
    t, east, north = 0, 0.0, 0.0
    fixes = []
    for _ in range(count):
        t += draw(st.sampled_from([1, 5, 10, 30, 120, 4000]))
        east += draw(st.floats(-400, 400))
        north += draw(st.floats(-400, 400))
        fixes.append(at(t, east, north))
    return fixes


class TestProperties:
    @given(wandering_fixes())
    def test_segments_tile_the_timeline(self, fixes: list[Fix]) -> None:
        machine = run(fixes)
        segments = machine.segments
        assert isinstance(segments[0], StopSegment)
        assert segments[0].start_t == fixes[0].t
        for prev, cur in itertools.pairwise(segments):
            assert prev.closed
            assert prev.end_t == cur.start_t
        assert not segments[-1].closed or isinstance(segments[-1], TripSegment)
        assert all(s.end_t >= s.start_t for s in segments)
        # Up to the last fix, unless it is kept aside as an outlier (only ever the last one).
        if machine.jump is None:
            assert max(s.end_t for s in segments) == fixes[-1].t
        else:
            assert machine.jump[0] == fixes[-1].t > max(s.end_t for s in segments)

    @given(wandering_fixes())
    def test_trip_distance_is_at_least_the_straight_line(self, fixes: list[Fix]) -> None:
        for trip in run(fixes).segments:
            if isinstance(trip, TripSegment):
                direct = haversine_m(trip.start_lat, trip.start_lon, trip.end_lat, trip.end_lon)
                assert trip.distance_m >= direct - 1e-6

    @given(wandering_fixes(), st.integers(0, 150))
    def test_resuming_from_json_changes_nothing(self, fixes: list[Fix], cut: int) -> None:
        params = MotionParams()
        whole = run(fixes, params)
        first = run(fixes[:cut], params)
        resumed = MotionMachine.from_json(params, first.to_json())
        for fix in fixes[cut:]:
            resumed.feed(fix)
        assert resumed.to_json() == whole.to_json()
