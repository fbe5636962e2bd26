"""Fix-derived alert rules (overspeed, geofence enter/exit, idle, low battery).

Each rule keeps a small JSON state per device so evaluation continues across batches and can
restart from a checkpoint. An alert is identified by ``(rule_id, occurred_at)`` for its
device; the engine reports every alert it creates or changes, with its current details, so
the caller reconciles the stored rows. Offline alerts depend on the wall clock and are
detected elsewhere (beat).

* overspeed: speed above ``limit x multiplier`` (limit from the rule, else the device's or the
  organization's); created once the episode has lasted ``min_duration_s``; ``occurred_at`` is
  the episode start; ``details = {limit_kmh, max_speed, end_time}`` (``end_time`` null while
  the episode lasts; it is the first fix back under the limit).
* geofence_enter / geofence_exit: a fix counts as inside (outside) only when it is inside
  (outside) by more than its accuracy; the side changes once the vehicle has stayed on the
  new side for ``min_dwell_s``; ``occurred_at`` is the first fix on the new side. The first
  side a device is seen on sets the state without an alert. The alert announces a dwell
  (inside for enter, outside for exit): ``details = {geofence_id, min_dwell_s, end_time}``,
  ``end_time`` null until the other side is confirmed, then that side's first fix.
* idle: stopped with ignition on (the last reported ``ignition``) for ``min_duration_s``;
  ``occurred_at`` is the start: the stop's start, or the fix that reported the ignition on
  if that came later (the motion rule knows a stop only ``min_duration`` after it began),
  at the stop's position; ``details.end_time`` / ``duration_s`` once it ends (the first
  fix seen moving or with the ignition off).
* low_battery: ``battery`` below ``threshold_pct``, once per episode; the episode ends when the
  battery is back at ``threshold_pct + LOW_BATTERY_HYSTERESIS_PCT`` or more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from milepost_worker.geo import Shape, boundary_margin_m, side_of
from milepost_worker.motion.machine import MICROS, Fix, StopSegment

OVERSPEED = "overspeed"
GEOFENCE_ENTER = "geofence_enter"
GEOFENCE_EXIT = "geofence_exit"
IDLE = "idle"
LOW_BATTERY = "low_battery"
FIX_RULE_TYPES = frozenset({OVERSPEED, GEOFENCE_ENTER, GEOFENCE_EXIT, IDLE, LOW_BATTERY})

# Battery readings jitter by a point or two around a threshold: one alert per real episode.
LOW_BATTERY_HYSTERESIS_PCT = 2.0

AlertKey = tuple[str, int]  # (rule_id, occurred_at in microseconds)


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A rule as evaluated for one device: ``limit_kmh`` is the device/organization fallback."""

    id: str
    type: str
    params: Mapping[str, Any]
    limit_kmh: float | None = None
    shape: Shape | None = None


@dataclass(slots=True)
class AlertOut:
    rule_id: str
    type: str
    occurred_at: int
    lat: float
    lon: float
    details: dict[str, Any]

    @property
    def key(self) -> AlertKey:
        return (self.rule_id, self.occurred_at)


def _watched(rule: RuleSpec) -> Any:
    """The geofence a geofence rule watches (None for other rules)."""
    return rule.params.get("geofence_id") if rule.type in (GEOFENCE_ENTER, GEOFENCE_EXIT) else None


def iso(t: int) -> str:
    """Microseconds since the epoch as ISO 8601 UTC with ``Z``."""
    moment = datetime.fromtimestamp(t // MICROS, UTC).replace(microsecond=t % MICROS)
    return moment.isoformat().replace("+00:00", "Z")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class RuleEngine:
    """Evaluates the rules of one device; ``outputs`` holds every alert created or changed."""

    def __init__(self, rules: Sequence[RuleSpec], states: Mapping[str, Any] | None = None) -> None:
        self.rules = [r for r in rules if r.type in FIX_RULE_TYPES]
        self.states: dict[str, dict[str, Any]] = {}
        saved = states or {}
        for rule in self.rules:
            state = saved.get(rule.id)
            # A state is the rule's as long as it watches what it watched: a geofence rule
            # pointed at another fence starts afresh (the old fence's side would be an
            # "enter" of the new one the vehicle never made). A state saved before states
            # named their fence is kept.
            watched = _watched(rule)
            kept = (
                isinstance(state, dict)
                and state.get("type") == rule.type
                and state.get("fence", watched) == watched
            )
            self.states[rule.id] = (
                dict(state) if kept and state else {"type": rule.type, "fence": watched}
            )
        self.outputs: dict[AlertKey, AlertOut] = {}

    def snapshot(self) -> dict[str, Any]:
        return {rule_id: dict(state) for rule_id, state in self.states.items()}

    def pending_keys(self) -> set[AlertKey]:
        """Alerts an episode open in the current state may still create or change."""
        keys: set[AlertKey] = set()
        for rule in self.rules:
            state = self.states[rule.id]
            if rule.type in (OVERSPEED, IDLE) and state.get("s") is not None:
                keys.add((rule.id, int(state["s"])))
            elif rule.type in (GEOFENCE_ENTER, GEOFENCE_EXIT):
                if state.get("cand") is not None:
                    keys.add((rule.id, int(state["cs"])))
                if state.get("a") is not None:
                    keys.add((rule.id, int(state["a"])))
        return keys

    def feed(self, fix: Fix, speed: float, stop: StopSegment | None) -> None:
        """Evaluate ``fix`` (its ``speed`` in km/h); ``stop`` is the vehicle's open stop, None
        while it moves."""
        # The fix's side of each shape, by the shape's identity (the rules watching one fence
        # share its shape): a fence is measured once per fix however many rules watch it; a
        # fence of 10,000 vertices can cost milliseconds a measurement.
        sides: dict[int, str | None] = {}
        for rule in self.rules:
            state = self.states[rule.id]
            if rule.type == OVERSPEED:
                self._overspeed(rule, state, fix, speed)
            elif rule.type in (GEOFENCE_ENTER, GEOFENCE_EXIT):
                self._geofence(rule, state, fix, sides)
            elif rule.type == IDLE:
                self._idle(rule, state, fix, stop)
            else:
                self._low_battery(rule, state, fix)

    def _emit(
        self, rule: RuleSpec, t: int, lat: float, lon: float, details: dict[str, Any]
    ) -> None:
        self.outputs[(rule.id, t)] = AlertOut(rule.id, rule.type, t, lat, lon, details)

    def _overspeed(self, rule: RuleSpec, state: dict[str, Any], fix: Fix, speed: float) -> None:
        base = _number(rule.params.get("limit_kmh"))
        if base is None:
            base = rule.limit_kmh
        if base is None:
            return
        limit = base * (_number(rule.params.get("multiplier")) or 1.0)
        min_duration = _number(rule.params.get("min_duration_s")) or 0.0
        start = state.get("s")
        if speed > limit:
            if start is None:
                state.update(s=fix.t, lat=fix.lat, lon=fix.lon, max=speed, created=False)
            else:
                state["max"] = max(state["max"], speed)
            if not state["created"] and fix.t - state["s"] >= min_duration * MICROS:
                state["created"] = True
            if state["created"]:
                self._emit(
                    rule,
                    state["s"],
                    state["lat"],
                    state["lon"],
                    {"limit_kmh": limit, "max_speed": state["max"], "end_time": None},
                )
        elif start is not None:
            if state["created"]:
                self._emit(
                    rule,
                    start,
                    state["lat"],
                    state["lon"],
                    {"limit_kmh": limit, "max_speed": state["max"], "end_time": iso(fix.t)},
                )
            for name in ("s", "lat", "lon", "max", "created"):
                state.pop(name, None)

    def _geofence(
        self, rule: RuleSpec, state: dict[str, Any], fix: Fix, sides: dict[int, str | None]
    ) -> None:
        min_dwell = _number(rule.params.get("min_dwell_s")) or 0.0
        if state.get("a") is not None:
            # The open dwell's alert, on every fix, as overspeed's open episode: a replay that
            # starts while it is open owns it (``pending_keys``) and must produce it.
            self._emit(rule, state["a"], state["alat"], state["alon"], _fence(rule, min_dwell))
        if rule.shape is None:
            return
        if id(rule.shape) in sides:
            side = sides[id(rule.shape)]
        else:
            margin = boundary_margin_m(rule.shape, _number(fix.accuracy))
            side = sides[id(rule.shape)] = side_of(rule.shape, fix.lat, fix.lon, margin)
        if side is None:
            return  # too close to the boundary for this fix's accuracy to tell
        confirmed = state.get("c")
        if confirmed is None or side == confirmed:
            state["c"] = side
            for name in ("cand", "cs", "clat", "clon"):
                state.pop(name, None)
            return
        if state.get("cand") != side:
            state.update(cand=side, cs=fix.t, clat=fix.lat, clon=fix.lon)
        if fix.t - state["cs"] >= min_dwell * MICROS:
            since, lat, lon = state["cs"], state["clat"], state["clon"]
            state["c"] = side
            for name in ("cand", "cs", "clat", "clon"):
                state.pop(name, None)
            if state.get("a") is not None:
                # The dwell the alert announced ends where the other side begins.
                start, a_lat, a_lon = state.pop("a"), state.pop("alat"), state.pop("alon")
                self._emit(rule, start, a_lat, a_lon, _fence(rule, min_dwell, iso(since)))
            if (rule.type == GEOFENCE_ENTER) == (side == "in"):
                state.update(a=since, alat=lat, alon=lon)
                self._emit(rule, since, lat, lon, _fence(rule, min_dwell))

    def _idle(
        self, rule: RuleSpec, state: dict[str, Any], fix: Fix, stop: StopSegment | None
    ) -> None:
        ignition = fix.attributes.get("ignition")
        if isinstance(ignition, bool):
            if ignition and state.get("ign") is not True:
                state["ign_t"] = fix.t  # when it came on
            state["ign"] = ignition
        min_duration = _number(rule.params.get("min_duration_s")) or 0.0
        start = state.get("s")
        if stop is not None and state.get("ign") is True:
            if start is None:
                # A state saved before ign_t was kept counts from this fix, as it did then.
                came_on = state.get("ign_t", fix.t)
                state.update(s=max(stop.start_t, came_on), lat=stop.lat, lon=stop.lon)
                state["created"] = False
            if fix.t - state["s"] >= min_duration * MICROS:
                state["created"] = True
            if state["created"]:
                self._emit(
                    rule,
                    state["s"],
                    state["lat"],
                    state["lon"],
                    {"min_duration_s": min_duration, "end_time": None, "duration_s": None},
                )
        elif start is not None:
            if state["created"]:
                self._emit(
                    rule,
                    start,
                    state["lat"],
                    state["lon"],
                    {
                        "min_duration_s": min_duration,
                        "end_time": iso(fix.t),
                        "duration_s": (fix.t - start) / MICROS,
                    },
                )
            for name in ("s", "lat", "lon", "created"):
                state.pop(name, None)

    def _low_battery(self, rule: RuleSpec, state: dict[str, Any], fix: Fix) -> None:
        battery = _number(fix.attributes.get("battery"))
        threshold = _number(rule.params.get("threshold_pct"))
        if battery is None or threshold is None:
            return
        if not state.get("low") and battery < threshold:
            state["low"] = True
            self._emit(
                rule, fix.t, fix.lat, fix.lon, {"battery_pct": battery, "threshold_pct": threshold}
            )
        # Recovered a little above the threshold, but never above a full battery: with a
        # threshold over 98 % the episode could never end, nor the rule alert again.
        elif state.get("low") and battery >= min(threshold + LOW_BATTERY_HYSTERESIS_PCT, 100.0):
            state["low"] = False


def _fence(rule: RuleSpec, min_dwell: float, end_time: str | None = None) -> dict[str, Any]:
    return {
        "geofence_id": rule.params.get("geofence_id"),
        "min_dwell_s": min_dwell,
        "end_time": end_time,
    }


def rule_ids(rules: Iterable[RuleSpec]) -> list[str]:
    return [r.id for r in rules if r.type in FIX_RULE_TYPES]
