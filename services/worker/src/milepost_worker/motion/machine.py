"""Trips and stops by the distance-window rule, one fix at a time, in ``fix_time`` order.

Only geometry and time decide motion; reported speed only feeds ``max_speed``. Times are
integer microseconds since the epoch (exact round trips with Postgres ``timestamptz``).

Rules (D = ``min_distance``, T = ``min_duration``, v = D / T; L = the previous fix):

* The window is the fixes of the last T before L plus the newest fix older than that; it never
  reaches back past the anchor (the anchor is the trip start while moving, so a stop can never
  end a trip before it began).
* Stopped, anchored at A: a fix P at >= D from A starts a trip at the latest fix before P newer
  than A (else at P), moved back over older window fixes newer than A while each leg averages
  more than v. The trip start becomes the anchor.
* Moving: when no window fix is >= D from P and P is >= T after the oldest window fix W, the trip
  ends and a stop starts at W; P becomes the anchor.
* Gap: P more than ``stop_gap`` after L, >= D from L and L->P faster than v on average: an open
  trip ends at L (an open stop ends at L), a trip runs L->P, and the device is stopped at P.
* Jump: P >= D from L and reached from L faster than ``max_speed`` (the organization's
  implausible speed) is a GPS outlier: kept aside, not fed. The next fix decides: reached
  plausibly from L, the outlier is dropped; reached plausibly from the outlier and not from L,
  the two agree (L was the outlier, or the tracker was moved): an open trip ends at L (an open
  stop ends at L) and a stop at the kept fix begins there (when the track was lost), with no
  trip between; neither, the next fix is kept aside instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from milepost_worker.geo import haversine_m

MICROS = 1_000_000


@dataclass(frozen=True, slots=True)
class MotionParams:
    min_distance_m: float = 200.0
    min_duration_s: float = 180.0
    stop_gap_s: float = 3600.0
    max_speed_kmh: float = 400.0

    @property
    def min_speed_mps(self) -> float:
        return self.min_distance_m / self.min_duration_s


@dataclass(slots=True)
class Fix:
    """One position as the worker sees it; ``t`` in microseconds since the epoch (UTC)."""

    t: int
    lat: float
    lon: float
    speed: float | None = None
    accuracy: float | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    course: float | None = None  # carried for the latest position, unused by the rule
    altitude: float | None = None


@dataclass(slots=True)
class TripSegment:
    start_t: int
    start_lat: float
    start_lon: float
    end_t: int
    end_lat: float
    end_lon: float
    distance_m: float
    max_speed: float
    closed: bool = False

    @property
    def duration_s(self) -> float:
        return (self.end_t - self.start_t) / MICROS

    @property
    def avg_speed(self) -> float:
        """km/h over the whole trip (distance / duration)."""
        duration = self.duration_s
        return self.distance_m / duration * 3.6 if duration > 0 else 0.0

    def to_json(self) -> list[Any]:
        return [
            self.start_t,
            self.start_lat,
            self.start_lon,
            self.end_t,
            self.end_lat,
            self.end_lon,
            self.distance_m,
            self.max_speed,
            self.closed,
        ]

    @classmethod
    def from_json(cls, raw: list[Any]) -> TripSegment:
        return cls(
            int(raw[0]), raw[1], raw[2], int(raw[3]), raw[4], raw[5], raw[6], raw[7], bool(raw[8])
        )


@dataclass(slots=True)
class StopSegment:
    start_t: int
    lat: float
    lon: float
    end_t: int
    closed: bool = False

    @property
    def duration_s(self) -> float:
        return (self.end_t - self.start_t) / MICROS

    def to_json(self) -> list[Any]:
        return [self.start_t, self.lat, self.lon, self.end_t, self.closed]

    @classmethod
    def from_json(cls, raw: list[Any]) -> StopSegment:
        return cls(int(raw[0]), raw[1], raw[2], int(raw[3]), bool(raw[4]))


# A window entry: [t, lat, lon, speed_kmh, trip distance up to here, trip max speed up to here].
_T, _LAT, _LON, _SPEED, _DIST, _VMAX = range(6)


def _leg(origin: list[Any], fix: Fix) -> tuple[float, float]:
    """Seconds and metres from ``origin`` (a window entry, or a fix kept aside) to ``fix``."""
    return (fix.t - origin[_T]) / MICROS, haversine_m(origin[_LAT], origin[_LON], fix.lat, fix.lon)


class MotionMachine:
    """The state of one device; feed fixes in time order, read the segments it opened."""

    __slots__ = (
        "anchor",
        "checkpoint_due",
        "jump",
        "moving",
        "params",
        "segments",
        "stop",
        "trip",
        "window",
    )

    def __init__(self, params: MotionParams) -> None:
        self.params = params
        self.moving = False
        # [t, lat, lon] of the anchor (kept apart: the window may have moved past it).
        self.anchor: list[Any] | None = None
        self.window: list[list[Any]] = []
        self.trip: TripSegment | None = None
        self.stop: StopSegment | None = None
        # Segments opened since this object was built (plus the open one it was built with).
        self.segments: list[TripSegment | StopSegment] = []
        # Set when a stop was just settled (its anchor fixed): the caller takes a checkpoint.
        self.checkpoint_due = False
        # [t, lat, lon, speed] of a fix kept aside as an outlier (see "Jump"), until the next.
        self.jump: list[Any] | None = None

    # -- persistence -------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "moving": self.moving,
            "anchor": self.anchor,
            "window": [list(w) for w in self.window],
            "trip": self.trip.to_json() if self.trip else None,
            "stop": self.stop.to_json() if self.stop else None,
            "jump": self.jump,
        }

    @classmethod
    def from_json(cls, params: MotionParams, raw: Mapping[str, Any] | None) -> MotionMachine:
        machine = cls(params)
        if not raw or raw.get("anchor") is None:
            return machine
        machine.moving = bool(raw["moving"])
        anchor = raw["anchor"]
        machine.anchor = [int(anchor[0]), anchor[1], anchor[2]]
        machine.window = [[int(w[0]), *w[1:]] for w in raw["window"]]
        machine.trip = TripSegment.from_json(raw["trip"]) if raw.get("trip") else None
        machine.stop = StopSegment.from_json(raw["stop"]) if raw.get("stop") else None
        jump = raw.get("jump")
        machine.jump = [int(jump[0]), *jump[1:]] if jump else None
        open_segment = machine.trip if machine.moving else machine.stop
        if open_segment is not None:
            machine.segments.append(open_segment)
        return machine

    @property
    def anchor_t(self) -> int | None:
        return self.anchor[0] if self.anchor is not None else None

    @property
    def last_t(self) -> int | None:
        return self.window[-1][_T] if self.window else None

    @property
    def open_segment_start(self) -> int | None:
        segment = self.trip if self.moving else self.stop
        return segment.start_t if segment is not None else None

    # -- the rule ----------------------------------------------------------------------------

    def feed(self, fix: Fix) -> float | None:
        """Advance by one fix (strictly newer than the last); returns its speed in km/h, or
        None for a fix kept aside as an outlier (see "Jump": nothing else may use it).

        The speed is the reported one, else that of the leg from the previous fix.
        """
        self.checkpoint_due = False
        if not self.window:
            speed = fix.speed if fix.speed is not None else 0.0
            self._settle_at(fix, speed)
            self.stop = StopSegment(fix.t, fix.lat, fix.lon, fix.t)
            self.segments.append(self.stop)
            return speed

        p = self.params
        last = self.window[-1]
        dt_s, leg_m = _leg(last, fix)
        if self._too_fast(dt_s, leg_m):
            jump = self.jump
            self.jump = [fix.t, fix.lat, fix.lon, fix.speed or 0.0]
            if jump is None or self._too_fast(*_leg(jump, fix)):
                return None
            self._relocate_to(jump)
            last = self.window[-1]
            dt_s, leg_m = _leg(last, fix)
        self.jump = None
        speed = fix.speed if fix.speed is not None else (leg_m / dt_s * 3.6 if dt_s > 0 else 0.0)

        if dt_s > p.stop_gap_s and leg_m >= p.min_distance_m and leg_m / dt_s > p.min_speed_mps:
            self._gap_trip(last, fix, leg_m, speed)
        elif self.moving:
            self._moving(last, fix, leg_m, speed)
        else:
            self._stopped(fix, speed)
        return speed

    def _too_fast(self, dt_s: float, leg_m: float) -> bool:
        """A leg >= D covered faster than ``max_speed``: implausible (see "Jump")."""
        p = self.params
        return leg_m >= p.min_distance_m and leg_m * 3.6 > p.max_speed_kmh * dt_s

    def _relocate_to(self, jump: list[Any]) -> None:
        """The fix kept aside and the one after it agree: the device is there. An open trip or
        stop ends at the last fix fed, where a stop at ``jump`` begins (no trip between: how
        it got there is unknown); the anchor is ``jump``."""
        last = self.window[-1]
        if self.moving:
            self._close_trip_at(last)
        elif self.stop is not None:
            self.stop.end_t = last[_T]
            self.stop.closed = True
        t, lat, lon, speed = jump
        self._settle_at(Fix(t=t, lat=lat, lon=lon), speed)
        self.stop = StopSegment(last[_T], lat, lon, t)
        self.segments.append(self.stop)

    def _settle_at(self, fix: Fix, speed: float) -> None:
        """Stopped, anchored at ``fix``: the window restarts there; a checkpoint is due."""
        self.moving = False
        self.anchor = [fix.t, fix.lat, fix.lon]
        self.window = [[fix.t, fix.lat, fix.lon, speed, 0.0, 0.0]]
        self.trip = None
        self.checkpoint_due = True

    def _gap_trip(self, last: list[Any], fix: Fix, leg_m: float, speed: float) -> None:
        if self.moving and self.trip is not None and self.trip.start_t != last[_T]:
            self._close_trip_at(last)
        elif not self.moving and self.stop is not None:
            self.stop.end_t = last[_T]
            self.stop.closed = True
        gap_trip = TripSegment(
            last[_T],
            last[_LAT],
            last[_LON],
            fix.t,
            fix.lat,
            fix.lon,
            leg_m,
            max(last[_SPEED], speed),
            closed=True,
        )
        if self.moving and self.trip is not None and self.trip.start_t == last[_T]:
            # The open trip began at L itself: it becomes the L->P trip (same start, one row).
            trip = self.trip
            trip.end_t, trip.end_lat, trip.end_lon = (
                gap_trip.end_t,
                gap_trip.end_lat,
                gap_trip.end_lon,
            )
            trip.distance_m, trip.max_speed, trip.closed = (
                gap_trip.distance_m,
                gap_trip.max_speed,
                True,
            )
        else:
            self.segments.append(gap_trip)
        self._settle_at(fix, speed)
        self.stop = StopSegment(fix.t, fix.lat, fix.lon, fix.t)
        self.segments.append(self.stop)

    def _stopped(self, fix: Fix, speed: float) -> None:
        p = self.params
        window = self.window
        anchor = self.anchor
        if anchor is None:  # the first fix sets it; a stored state always has one
            raise RuntimeError("a stopped machine without an anchor")
        if haversine_m(anchor[1], anchor[2], fix.lat, fix.lon) < p.min_distance_m:
            window.append([fix.t, fix.lat, fix.lon, speed, 0.0, 0.0])
            self._prune(fix.t)
            if self.stop is not None:
                self.stop.end_t = fix.t
            return
        # Start moving. Candidates for the start: window fixes newer than the anchor.
        # Window fixes newer than the anchor start at index `first_newer`.
        first_newer = 1 if window[0][_T] <= anchor[0] else 0
        start = len(window) - 1
        if start < first_newer:
            trip_fixes: list[list[Any]] = []
        else:
            min_speed = p.min_speed_mps
            while start - 1 >= first_newer:
                a, b = window[start - 1], window[start]
                leg = haversine_m(a[_LAT], a[_LON], b[_LAT], b[_LON])
                if leg / ((b[_T] - a[_T]) / MICROS) > min_speed:
                    start -= 1
                else:
                    break
            trip_fixes = [list(w) for w in window[start:]]
        trip_fixes.append([fix.t, fix.lat, fix.lon, speed, 0.0, 0.0])
        distance = 0.0
        vmax = trip_fixes[0][_SPEED]
        trip_fixes[0][_DIST] = 0.0
        trip_fixes[0][_VMAX] = vmax
        for prev, cur in itertools.pairwise(trip_fixes):
            distance += haversine_m(prev[_LAT], prev[_LON], cur[_LAT], cur[_LON])
            vmax = max(vmax, cur[_SPEED])
            cur[_DIST] = distance
            cur[_VMAX] = vmax
        first = trip_fixes[0]
        if self.stop is not None:
            self.stop.end_t = first[_T]
            self.stop.closed = True
        self.stop = None
        self.moving = True
        self.anchor = [first[_T], first[_LAT], first[_LON]]
        self.trip = TripSegment(
            first[_T], first[_LAT], first[_LON], fix.t, fix.lat, fix.lon, distance, vmax
        )
        self.segments.append(self.trip)
        self.window = trip_fixes
        self._prune(fix.t)

    def _moving(self, last: list[Any], fix: Fix, leg_m: float, speed: float) -> None:
        p = self.params
        window = self.window
        oldest = window[0]
        if fix.t - oldest[_T] >= p.min_duration_s * MICROS and not any(
            haversine_m(w[_LAT], w[_LON], fix.lat, fix.lon) >= p.min_distance_m for w in window
        ):
            self._close_trip_at(oldest)
            self._settle_at(fix, speed)
            self.stop = StopSegment(oldest[_T], oldest[_LAT], oldest[_LON], fix.t)
            self.segments.append(self.stop)
            return
        distance = last[_DIST] + leg_m
        vmax = max(last[_VMAX], speed)
        window.append([fix.t, fix.lat, fix.lon, speed, distance, vmax])
        self._prune(fix.t)
        trip = self.trip
        if trip is not None:
            trip.end_t, trip.end_lat, trip.end_lon = fix.t, fix.lat, fix.lon
            trip.distance_m, trip.max_speed = distance, vmax

    def _close_trip_at(self, end: list[Any]) -> None:
        trip = self.trip
        if trip is None:
            return
        trip.end_t, trip.end_lat, trip.end_lon = end[_T], end[_LAT], end[_LON]
        trip.distance_m, trip.max_speed = end[_DIST], end[_VMAX]
        trip.closed = True

    def _prune(self, newest_t: int) -> None:
        """Keep the fixes of the last T before ``newest_t`` plus the newest one older."""
        boundary = newest_t - self.params.min_duration_s * MICROS
        window = self.window
        drop = 0
        while drop + 1 < len(window) and window[drop + 1][_T] < boundary:
            drop += 1
        if drop:
            del window[:drop]
