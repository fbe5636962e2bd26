"""The simulated fleet: vehicles driving a street grid, where each one is at any moment.

A vehicle's day is a chain of activities drawn from its own seeded generator: parked at a
point for a few minutes, then a drive along the streets to a random intersection (one in
three to the depot, inside the demo geofence), sometimes with a speeding stretch, and so on.
Where a vehicle is at time ``t`` depends only on the seed, the vehicle, the fleet's epoch and
``t`` — not on how often it is asked — so a live run, a restarted run and a backfill all
agree. Roles give the demo its events: vehicle 2 is a phone whose battery runs low every 20
minutes, vehicle 3 a tracker that goes silent for 8 minutes of every 20.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from milepost_sim.fixes import SimFix
from milepost_sim.geo import LocalFrame, bearing_deg, jitter_m, mix
from milepost_sim.routes import Point, Polyline, staircase_home

Transport = Literal["batch", "osmand"]
Role = Literal["", "low_battery", "offline"]

DEFAULT_CENTER = (52.5200, 13.4050)
BLOCK_M = 250.0
GRID_BLOCKS = 12  # streets from -12 to +12 blocks around the center: a 6 km square
# The demo geofence: a square of 3 x 3 blocks centered on the depot intersection.
DEPOT_HALF_M = 1.5 * BLOCK_M
CYCLE_S = 1200  # the period of the low-battery and offline roles
OFFLINE_FROM_S, OFFLINE_TO_S = 240, 720  # silent within each cycle
BATTERY_HIGH, BATTERY_LOW = 30.0, 12.0  # the low-battery phone's sawtooth (charged at HIGH)


@dataclass(frozen=True, slots=True)
class VehicleSpec:
    index: int
    unique_id: str
    name: str
    plate: str
    transport: Transport
    role: Role = ""


def fleet_specs(count: int, prefix: str = "demo-") -> list[VehicleSpec]:
    """``count`` vehicles: every third one a phone (OsmAnd), the rest gateway trackers;
    the second is the low-battery phone, the third the tracker that goes offline."""
    specs = []
    for index in range(count):
        phone = index % 3 == 1
        role: Role = "low_battery" if index == 1 else "offline" if index == 2 else ""
        specs.append(
            VehicleSpec(
                index=index,
                unique_id=f"{prefix}{index + 1:03d}",
                name=f"{'Courier' if phone else 'Van'} {index + 1}",
                plate=f"B-MP {1000 + index + 1}",
                transport="osmand" if phone else "batch",
                role=role,
            )
        )
    return specs


def depot_polygon(center: tuple[float, float] = DEFAULT_CENTER) -> dict[str, Any]:
    """The demo geofence (GeoJSON Polygon, [lon, lat], closed) around the depot."""
    frame = LocalFrame(*center)
    h = DEPOT_HALF_M
    corners = [(-h, -h), (h, -h), (h, h), (-h, h), (-h, -h)]
    ring = [[lon, lat] for lat, lon in (frame.to_latlon(x, y) for x, y in corners)]
    return {"type": "Polygon", "coordinates": [ring]}


@dataclass(frozen=True, slots=True)
class Piece:
    """A stretch of a drive at one speed: from ``t0`` (s after the epoch), ``d0`` meters in."""

    t0: float
    d0: float
    speed_kmh: float


@dataclass(slots=True)
class Activity:
    """Parked at ``at`` (``path`` None) or driving ``path``, from ``start`` to ``end``."""

    start: float
    end: float
    at: Point
    path: Polyline | None = None
    pieces: list[Piece] = field(default_factory=list)
    course: float = 0.0  # parked: the heading it arrived with

    def distance_at(self, t: float) -> tuple[float, float]:
        """Meters along the path at ``t``, and the speed (km/h) there."""
        index = max(0, bisect.bisect_right([p.t0 for p in self.pieces], t) - 1)
        piece = self.pieces[index]
        return piece.d0 + piece.speed_kmh / 3.6 * (t - piece.t0), piece.speed_kmh


@dataclass(frozen=True, slots=True)
class Schedule:
    """When the fleet drives (seconds after the epoch) and how long it parks."""

    park_s: tuple[int, int] = (240, 540)
    # Working hours: outside them vehicles stay parked; None drives around the clock.
    hours: tuple[float, float] | None = None


class VehicleModel:
    """Where one vehicle is at any time after the epoch (see the module's docstring)."""

    def __init__(
        self,
        spec: VehicleSpec,
        seed: int,
        epoch: datetime,
        schedule: Schedule | None = None,
        center: tuple[float, float] = DEFAULT_CENTER,
    ) -> None:
        self.spec = spec
        self.seed = seed
        self.epoch = epoch
        self.schedule = schedule or Schedule()
        self.frame = LocalFrame(*center)
        self.rng = random.Random(mix(seed, spec.index))
        # Every vehicle starts the day parked at an intersection of the depot.
        home = (self.rng.randint(-1, 1) * BLOCK_M, self.rng.randint(-1, 1) * BLOCK_M)
        self.activities: list[Activity] = [Activity(0.0, self._park_length(0.0), home)]
        self.starts = [0.0]

    # -- the plan --------------------------------------------------------------------------

    def _park_length(self, start: float) -> float:
        low, high = self.schedule.park_s
        end = start + self.rng.randint(low, high)
        if self.schedule.hours is not None:
            first, last = self.schedule.hours
            day, into = divmod(end, 86_400)
            # Out in the morning within an hour of the first, each vehicle at its own time.
            if into < first:
                end = day * 86_400 + first + self.rng.randint(0, 3600)
            elif into > last:
                end = (day + 1) * 86_400 + first + self.rng.randint(0, 3600)
        return end

    def _destination(self, here: Point) -> Point:
        while True:
            if self.rng.random() < 1 / 3:
                goal = (self.rng.randint(-1, 1) * BLOCK_M, self.rng.randint(-1, 1) * BLOCK_M)
            else:
                n = GRID_BLOCKS
                goal = (self.rng.randint(-n, n) * BLOCK_M, self.rng.randint(-n, n) * BLOCK_M)
            if abs(goal[0] - here[0]) + abs(goal[1] - here[1]) >= 3 * BLOCK_M:
                return goal

    def _drive(self, start: float, here: Point) -> Activity:
        path = staircase_home(self.rng, here, self._destination(here), BLOCK_M)
        cruise = self.rng.randint(30, 48)
        pieces = [Piece(start, 0.0, float(cruise))]
        if path.length >= 1500 and self.rng.random() < 0.5:
            # Speeding: 60-120 s at 80-95 km/h, from somewhere in the first half.
            d0 = self.rng.uniform(200, path.length / 2)
            t0 = start + d0 / (cruise / 3.6)
            fast = float(self.rng.randint(80, 95))
            length = min(self.rng.randint(60, 120) * fast / 3.6, path.length - d0 - 100)
            pieces += [Piece(t0, d0, fast), Piece(t0 + length / (fast / 3.6), d0 + length, cruise)]
        last = pieces[-1]
        end = last.t0 + (path.length - last.d0) / (last.speed_kmh / 3.6)
        return Activity(start, end, path.points[-1], path, pieces)

    def _extend_to(self, t: float) -> None:
        while self.activities[-1].end <= t:
            last = self.activities[-1]
            if last.path is None:
                following = self._drive(last.end, last.at)
            else:
                (x1, y1), (x2, y2) = last.path.points[-2:]
                course = bearing_deg(x1, y1, x2, y2)
                following = Activity(last.end, self._park_length(last.end), last.at, course=course)
            self.activities.append(following)
            self.starts.append(following.start)

    def activity_at(self, t: float) -> Activity:
        self._extend_to(t)
        return self.activities[bisect.bisect_right(self.starts, t) - 1]

    # -- what the tracker reports ----------------------------------------------------------

    def silent_at(self, t: float) -> bool:
        return self.spec.role == "offline" and OFFLINE_FROM_S <= t % CYCLE_S < OFFLINE_TO_S

    def fix_at(self, moment: datetime) -> SimFix | None:
        """The fix the tracker sends at ``moment``, or None while it is offline."""
        t = (moment - self.epoch).total_seconds()
        if t < 0:
            raise ValueError("the fleet has no history before its epoch")
        if self.silent_at(t):
            return None
        key = (self.seed, self.spec.index, int(t * 1000))
        activity = self.activity_at(t)
        if activity.path is None:
            dx, dy = jitter_m(3.0, *key)
            x, y = activity.at[0] + dx, activity.at[1] + dy
            speed, course = 0.0, activity.course
        else:
            distance, nominal = activity.distance_at(t)
            x, y = activity.path.at(distance)
            before, ahead = activity.path.at(distance - 5.0), activity.path.at(distance + 5.0)
            course = bearing_deg(*before, *ahead)
            speed = max(0.0, nominal + (mix(*key) % 41 - 20) / 10)  # +-2 km/h of noise
        lat, lon = self.frame.to_latlon(x, y)
        return SimFix(
            self.spec.unique_id,
            moment,
            lat,
            lon,
            round(speed, 1),
            course,
            34.0 + (mix(*key, 7) % 50) / 10,
            5.0,
            self._attributes(t, moving=activity.path is not None),
        )

    def _attributes(self, t: float, moving: bool) -> dict[str, Any]:
        if self.spec.transport == "batch":
            return {"ignition": moving}
        if self.spec.role == "low_battery":
            # Drains from HIGH to LOW over a cycle, then is charged back at once.
            into = (t % CYCLE_S) / CYCLE_S
            battery = BATTERY_HIGH - (BATTERY_HIGH - BATTERY_LOW) * into
            return {"battery": round(battery, 1), "charge": into > 0.95}
        return {"battery": round(max(40.0, 95.0 - t / 3600 * 2), 1), "charge": False}

    def next_report(self, t: float, moving_s: float, parked_s: float) -> float:
        """When the tracker reports after ``t``: every ``moving_s`` while driving, every
        ``parked_s`` while parked (but at the end of a park, so a departure is seen)."""
        activity = self.activity_at(t)
        if activity.path is not None:
            return t + moving_s
        return min(t + parked_s, activity.end) if activity.end > t else t + moving_s


class Fleet:
    """The vehicles of one seed, sharing an epoch."""

    def __init__(
        self,
        specs: list[VehicleSpec],
        seed: int,
        epoch: datetime,
        schedule: Schedule | None = None,
        center: tuple[float, float] = DEFAULT_CENTER,
    ) -> None:
        self.seed = seed
        self.epoch = epoch
        self.vehicles = [VehicleModel(spec, seed, epoch, schedule, center) for spec in specs]

    def history(
        self, start: datetime, end: datetime, moving_s: float, parked_s: float
    ) -> list[SimFix]:
        """Every fix of the fleet in ``[start, end)``, vehicle after vehicle, in time order."""
        fixes: list[SimFix] = []
        first = (start - self.epoch).total_seconds()
        last = (end - self.epoch).total_seconds()
        for vehicle in self.vehicles:
            t = first
            while t < last:
                fix = vehicle.fix_at(self.epoch + timedelta(seconds=round(t, 3)))
                if fix is not None:
                    fixes.append(fix)
                t = vehicle.next_report(t, moving_s, parked_s)
        return fixes
