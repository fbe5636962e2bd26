"""A scripted drive: one vehicle's deterministic day, with what the platform must make of it.

``scripted_drive(seed, start)`` builds a drive of about an hour, one fix every 30 s:

1. parked at the depot (inside the script's geofence) for 10 to 15 minutes;
2. a drive away from the depot along the streets (it leaves the geofence), with a speeding
   stretch of 4 to 6 fixes at 86 to 98 km/h in the middle (cruising at 40 to 46 km/h);
3. parked 10 to 15 minutes (the tracker's battery falls below 20 % there);
4. a drive back to the depot (it enters the geofence);
5. parked 10 minutes at the depot, where the script ends.

The expectations are derived from that construction, not by running the worker. They hold
for the default trip parameters (``min_distance_m`` 200, ``min_duration_s`` 180,
``stop_gap_s`` 3600) and for the rules ``Script.alert_rules`` describes, and the script is
built so that none is borderline:

* every leg of a drive is at least 235 m long (staircase paths, 333 m or more along the
  street in 30 s), and parked fixes wobble by 1.5 m at most, so a trip starts at the last
  parked fix and ends at the drive's last fix (where the vehicle parks), and a stop runs
  from there to the next trip's start (the last one stays open);
* the speeding stretch lasts at least 90 s above 50 km/h (the rule waits 30 s), every other
  moving fix is below 47 km/h;
* the geofence is a circle around the depot whose radius keeps every fix at least 25 m (five
  times its accuracy) from the boundary; the drive away crosses it once, the drive back once;
* the battery falls by 0.2 points a fix and is never exactly at the threshold.

Use, e.g. in an end-to-end test (times must be in the past and within the retention)::

    script = scripted_drive(seed=1, start=now - timedelta(hours=2))
    # register script.vehicle(); POST script.geofence.to_api() to /api/v1/geofences; POST
    # each body of script.alert_rules(geofence_id, [vehicle_id]) to /api/v1/alert-rules;
    # push script.fixes (fix.to_item() in batches, fix.to_osmand() one by one, in any split);
    # then compare /api/v1/trips, /stops and /alerts with script.expected_trips,
    # expected_stops and expected_alerts (the api rounds km/h and meters to 0.1).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from milepost_sim.fixes import SimFix, iso
from milepost_sim.geo import LocalFrame, bearing_deg, haversine_m, jitter_m
from milepost_sim.routes import EAST, NORTH, Point, Polyline, staircase_home, staircase_out

DEFAULT_CENTER = (52.5200, 13.4050)
INTERVAL_S = 30
BLOCK_M = 250.0
SPEED_LIMIT_KMH = 50.0
OVERSPEED_MIN_DURATION_S = 30
BATTERY_THRESHOLD_PCT = 20.0
ACCURACY_M = 5.0
PARKED_WOBBLE_M = 1.5
# The geofence's boundary keeps at least this far from every fix.
GEOFENCE_CLEARANCE_M = 5 * ACCURACY_M
_RADIUS_RANGE_M = (300, 800)


@dataclass(frozen=True, slots=True)
class ExpectedTrip:
    start_time: datetime
    end_time: datetime
    start_lat: float
    start_lon: float
    end_lat: float
    end_lon: float
    distance_m: float
    max_speed: float

    @property
    def duration_s(self) -> float:
        return (self.end_time - self.start_time).total_seconds()


@dataclass(frozen=True, slots=True)
class ExpectedStop:
    """``end_time`` is None for the stop still open at the script's end."""

    start_time: datetime
    end_time: datetime | None
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class ExpectedAlert:
    """``details`` holds the keys the script can know (not the geofence's id)."""

    type: str
    occurred_at: datetime
    lat: float
    lon: float
    details: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ScriptGeofence:
    name: str
    lat: float
    lon: float
    radius_m: float

    def to_api(self) -> dict[str, Any]:
        """The body of ``POST /api/v1/geofences``."""
        return {
            "name": self.name,
            "geometry": {"type": "Point", "coordinates": [self.lon, self.lat]},
            "radius_m": self.radius_m,
        }


@dataclass(frozen=True, slots=True)
class Script:
    """One vehicle's scripted drive and what it must produce (see the module's docstring)."""

    unique_id: str
    name: str
    fixes: tuple[SimFix, ...]
    geofence: ScriptGeofence
    expected_trips: tuple[ExpectedTrip, ...]
    expected_stops: tuple[ExpectedStop, ...]
    expected_alerts: tuple[ExpectedAlert, ...]
    speed_limit_kmh: float = SPEED_LIMIT_KMH
    battery_threshold_pct: float = BATTERY_THRESHOLD_PCT
    overspeed_min_duration_s: int = OVERSPEED_MIN_DURATION_S
    phases: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def items(self) -> list[dict[str, Any]]:
        """Every fix as an item of ``POST /ingest/v1/positions``."""
        return [fix.to_item() for fix in self.fixes]

    def vehicle(self) -> dict[str, Any]:
        """The body registering the vehicle (admin's devices or the api's vehicles)."""
        return {
            "unique_id": self.unique_id,
            "name": self.name,
            "speed_limit_kmh": self.speed_limit_kmh,
        }

    def alert_rules(
        self, geofence_id: str, vehicle_ids: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Bodies of ``POST /api/v1/alert-rules`` the expected alerts assume, one per type."""
        targets = list(vehicle_ids) if vehicle_ids is not None else None
        params: dict[str, dict[str, Any]] = {
            "overspeed": {
                "limit_kmh": self.speed_limit_kmh,
                "min_duration_s": self.overspeed_min_duration_s,
            },
            "geofence_exit": {"geofence_id": geofence_id},
            "geofence_enter": {"geofence_id": geofence_id},
            "low_battery": {"threshold_pct": self.battery_threshold_pct},
        }
        return [
            {"name": f"{self.name}: {kind}", "type": kind, "params": p, "vehicle_ids": targets}
            for kind, p in params.items()
        ]


@dataclass(slots=True)
class _Builder:
    rng: random.Random
    seed: int
    start: datetime
    unique_id: str
    frame: LocalFrame
    fixes: list[SimFix] = field(default_factory=list)
    positions: list[Point] = field(default_factory=list)
    course: float = 0.0

    def _add(self, x: float, y: float, speed: float, ignition: bool) -> None:
        lat, lon = self.frame.to_latlon(x, y)
        moment = self.start + timedelta(seconds=INTERVAL_S * len(self.fixes))
        self.fixes.append(
            SimFix(
                self.unique_id,
                moment,
                lat,
                lon,
                round(speed, 1),
                self.course,
                34.0,
                ACCURACY_M,
                {"ignition": ignition},
            )
        )
        self.positions.append((x, y))

    def park(self, at: Point, duration_s: int) -> tuple[int, int]:
        first = len(self.fixes)
        for _ in range(duration_s // INTERVAL_S):
            dx, dy = jitter_m(PARKED_WOBBLE_M, self.seed, len(self.fixes))
            self._add(at[0] + dx, at[1] + dy, 0.0, ignition=False)
        return first, len(self.fixes) - 1

    def drive(self, path: Polyline, speeds_kmh: Sequence[float]) -> tuple[int, int]:
        """One fix per speed, each ``speed x 30 s`` further along ``path``; the last fix is
        the path's end (the first fix of the park that follows)."""
        first = len(self.fixes)
        s = 0.0
        for speed in speeds_kmh:
            s += speed / 3.6 * INTERVAL_S
            x, y = path.at(s)
            px, py = self.positions[-1]
            self.course = bearing_deg(px, py, x, y)
            self._add(x, y, speed, ignition=True)
        return first, len(self.fixes) - 1


def _cruise(rng: random.Random) -> float:
    return float(rng.randint(400, 460)) / 10


def scripted_drive(
    seed: int,
    start: datetime,
    *,
    unique_id: str = "script-1",
    name: str = "Scripted van",
    center: tuple[float, float] = DEFAULT_CENTER,
) -> Script:
    """The scripted drive of ``seed`` from ``start`` (timezone-aware), with its expectations.

    Pure and deterministic: the same arguments give the same fixes. ``center`` is the depot.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    rng = random.Random(seed)
    b = _Builder(rng, seed, start, unique_id, LocalFrame(*center))
    depot: Point = (0.0, 0.0)

    park1 = b.park(depot, rng.randint(20, 30) * INTERVAL_S)

    cruise_before = [_cruise(rng) for _ in range(rng.randint(3, 5))]
    speeding = [float(rng.randint(860, 980)) / 10 for _ in range(rng.randint(4, 6))]
    cruise_after = [_cruise(rng) for _ in range(rng.randint(3, 5))]
    speeds_out = cruise_before + speeding + cruise_after
    length_out = sum(v / 3.6 * INTERVAL_S for v in speeds_out)
    path_out = staircase_out(rng, depot, (EAST, NORTH), length_out, BLOCK_M)
    drive1 = b.drive(path_out, speeds_out)
    away = path_out.points[-1]

    park2 = b.park(away, rng.randint(20, 30) * INTERVAL_S)

    path_home = staircase_home(rng, away, depot, BLOCK_M)
    legs = int(path_home.length // (46.0 / 3.6 * INTERVAL_S)) + 1
    speed_home = round(path_home.length / legs / INTERVAL_S * 3.6, 6)
    drive2 = b.drive(path_home, [speed_home] * legs)
    park3 = b.park(depot, 20 * INTERVAL_S)

    low_at = park2[0] + rng.randint(2, 10)
    fixes = [
        _with_battery(fix, round(BATTERY_THRESHOLD_PCT - 0.1 + 0.2 * (low_at - k), 1))
        for k, fix in enumerate(b.fixes)
    ]
    phases = {"park1": park1, "drive1": drive1, "park2": park2, "drive2": drive2, "park3": park3}
    radius = _geofence_radius(fixes, b.frame)
    geofence = ScriptGeofence(f"{name} depot", *b.frame.to_latlon(0.0, 0.0), radius)
    first_speeding = drive1[0] + len(cruise_before)
    return Script(
        unique_id=unique_id,
        name=name,
        fixes=tuple(fixes),
        geofence=geofence,
        expected_trips=(
            _trip(fixes, park1[1], drive1[1]),
            _trip(fixes, park2[1], drive2[1]),
        ),
        expected_stops=(
            _stop(fixes, park1[0], fixes[park1[1]].fix_time),
            _stop(fixes, drive1[1], fixes[park2[1]].fix_time),
            _stop(fixes, drive2[1], None),
        ),
        expected_alerts=tuple(
            sorted(
                [
                    _crossing(fixes, geofence, drive1, "geofence_exit"),
                    _overspeed(fixes, first_speeding, len(speeding)),
                    _crossing(fixes, geofence, drive2, "geofence_enter"),
                    _alert(
                        fixes[low_at],
                        "low_battery",
                        battery_pct=fixes[low_at].attributes["battery"],
                        threshold_pct=BATTERY_THRESHOLD_PCT,
                    ),
                ],
                key=lambda alert: alert.occurred_at,
            )
        ),
        phases=phases,
    )


def _with_battery(fix: SimFix, battery: float) -> SimFix:
    return SimFix(
        fix.unique_id,
        fix.fix_time,
        fix.lat,
        fix.lon,
        fix.speed,
        fix.course,
        fix.altitude,
        fix.accuracy,
        {**fix.attributes, "battery": battery},
    )


def _distance_from(geofence_lat: float, geofence_lon: float, fix: SimFix) -> float:
    return haversine_m(geofence_lat, geofence_lon, fix.lat, fix.lon)


def _geofence_radius(fixes: Sequence[SimFix], frame: LocalFrame) -> float:
    """The whole-meter radius in the allowed range farthest from every fix's distance."""
    lat, lon = frame.to_latlon(0.0, 0.0)
    distances = [_distance_from(lat, lon, fix) for fix in fixes]
    best, clearance = max(
        ((r, min(abs(d - r) for d in distances)) for r in range(*_RADIUS_RANGE_M)),
        key=lambda candidate: candidate[1],
    )
    if clearance < GEOFENCE_CLEARANCE_M:  # never for the routes built here; checked anyway
        raise RuntimeError(f"no geofence radius clears every fix by {GEOFENCE_CLEARANCE_M} m")
    return float(best)


def _trip(fixes: Sequence[SimFix], first: int, last: int) -> ExpectedTrip:
    span = fixes[first : last + 1]
    distance = sum(haversine_m(a.lat, a.lon, b.lat, b.lon) for a, b in itertools.pairwise(span))
    return ExpectedTrip(
        span[0].fix_time,
        span[-1].fix_time,
        span[0].lat,
        span[0].lon,
        span[-1].lat,
        span[-1].lon,
        distance,
        max(fix.speed for fix in span),
    )


def _stop(fixes: Sequence[SimFix], first: int, end_time: datetime | None) -> ExpectedStop:
    return ExpectedStop(fixes[first].fix_time, end_time, fixes[first].lat, fixes[first].lon)


def _alert(fix: SimFix, kind: str, **details: Any) -> ExpectedAlert:
    return ExpectedAlert(kind, fix.fix_time, fix.lat, fix.lon, details)


def _crossing(
    fixes: Sequence[SimFix], geofence: ScriptGeofence, drive: tuple[int, int], kind: str
) -> ExpectedAlert:
    """The drive's first fix on the far side: outside for an exit, inside for an enter."""
    wanted_inside = kind == "geofence_enter"
    for fix in fixes[drive[0] : drive[1] + 1]:
        inside = _distance_from(geofence.lat, geofence.lon, fix) < geofence.radius_m
        if inside == wanted_inside:
            return _alert(fix, kind, min_dwell_s=0.0)
    raise RuntimeError(f"the drive never crosses the geofence ({kind})")


def _overspeed(fixes: Sequence[SimFix], first: int, count: int) -> ExpectedAlert:
    stretch = fixes[first : first + count]
    return _alert(
        stretch[0],
        "overspeed",
        limit_kmh=SPEED_LIMIT_KMH,
        max_speed=max(fix.speed for fix in stretch),
        end_time=iso(fixes[first + count].fix_time),
    )
