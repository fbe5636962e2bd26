"""One device's timeline: replay fixes from a snapshot, and what the stored rows must become.

Pure. The handler (and the in-memory model in the tests) decides where to start: the device's
latest state for fixes newer than its watermark, else the last settled stop (checkpoint)
before the earliest late fix, else the beginning. Replaying from there produces the final form
of every trip, stop, checkpoint and fix-derived alert in the returned ``Scope``; stored rows in
that scope that the replay did not produce are deleted, the others kept by key (trips and
stops by ``start_time``, alerts by ``(rule_id, occurred_at)``), so ids and acknowledgements
survive a recomputation.

A late fix's replay stops where it converges: at a stored checkpoint, past the late fixes,
whose state it reproduces exactly. From the same state over the same fixes, the rest of the
replay would reproduce the stored rows, so they stay (``Until``). Checkpoints are taken where
a stop settles and at the first fix of every ``CHECKPOINT_EVERY_S`` of UTC time (a grid, so a
late fix moves at most its own cell's), so a late fix's replay starts and ends within hours
of it, however long the device was parked or driving.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from milepost_worker.motion.machine import (
    MICROS,
    Fix,
    MotionMachine,
    MotionParams,
    StopSegment,
    TripSegment,
)
from milepost_worker.rules.engine import AlertKey, AlertOut, RuleEngine, RuleSpec

# Besides each settled stop, a checkpoint at the first fix of every cell of this grid.
CHECKPOINT_EVERY_S = 6 * 3600


@dataclass(slots=True)
class Snapshot:
    """The machine and rule states right after the fix at ``last_t``."""

    machine: dict[str, Any]
    rules: dict[str, Any]
    last_t: int

    def to_json(self) -> dict[str, Any]:
        return {"machine": self.machine, "rules": self.rules, "last_t": self.last_t}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> Snapshot | None:
        if not raw or raw.get("last_t") is None:
            return None
        return cls(dict(raw["machine"]), dict(raw.get("rules") or {}), int(raw["last_t"]))


@dataclass(frozen=True, slots=True)
class Until:
    """Where a converged replay stopped owning rows: at the checkpoint ``t`` it reproduced.
    The segment open there (from ``segments_from``) and the episodes open there
    (``open_keys``) continue in the stored rows, as does everything after ``t``."""

    t: int
    segments_from: int
    open_keys: frozenset[AlertKey]


@dataclass(slots=True)
class Scope:
    """The stored rows a replay from a snapshot owns (None: every row of the device), up to
    ``until`` when it converged."""

    trips_from: int | None
    stops_from: int | None
    alerts_after: int | None
    alert_keys: frozenset[AlertKey]
    checkpoints_after: int | None
    until: Until | None = None

    def owns_trip(self, start_t: int) -> bool:
        return (self.trips_from is None or start_t >= self.trips_from) and self._before(start_t)

    def owns_stop(self, start_t: int) -> bool:
        return (self.stops_from is None or start_t >= self.stops_from) and self._before(start_t)

    def owns_alert(self, key: AlertKey) -> bool:
        after = self.alerts_after is None or key[1] > self.alerts_after or key in self.alert_keys
        until = self.until
        return after and (until is None or (key[1] <= until.t and key not in until.open_keys))

    def owns_checkpoint(self, anchor_t: int) -> bool:
        after = self.checkpoints_after is None or anchor_t > self.checkpoints_after
        return after and (self.until is None or anchor_t <= self.until.t)

    def _before(self, start_t: int) -> bool:
        return self.until is None or start_t < self.until.segments_from


@dataclass(slots=True)
class Replay:
    scope: Scope
    trips: list[TripSegment]
    stops: list[StopSegment]
    alerts: dict[AlertKey, AlertOut]
    checkpoints: list[tuple[int, Snapshot]]
    final: Snapshot  # the state after ``last_fix``: the device's, unless ``scope.until``
    last_fix: Fix


def scope_of(start: Snapshot | None, params: MotionParams, rules: Sequence[RuleSpec]) -> Scope:
    if start is None:
        return Scope(None, None, None, frozenset(), None)
    machine = MotionMachine.from_json(params, start.machine)
    anchor_t = machine.anchor_t if machine.anchor_t is not None else start.last_t
    open_start = machine.open_segment_start
    stops_from = anchor_t if machine.moving or open_start is None else open_start
    pending = RuleEngine(rules, start.rules).pending_keys()
    return Scope(anchor_t, stops_from, start.last_t, frozenset(pending), start.last_t)


class Replayer:
    """A replay fed in chunks (ascending, all newer than ``start``), which can stop where it
    converges with the stored checkpoints (see the module's note)."""

    def __init__(
        self,
        start: Snapshot | None,
        params: MotionParams,
        rules: Sequence[RuleSpec],
        checkpoint_every_s: float | None = None,
    ) -> None:
        self.scope = scope_of(start, params, rules)
        self.cell_us = round((checkpoint_every_s or CHECKPOINT_EVERY_S) * MICROS)
        self.previous_t = start.last_t if start else None
        self.machine = MotionMachine.from_json(params, start.machine if start else None)
        self.engine = RuleEngine(rules, start.rules if start else None)
        self.checkpoints: list[tuple[int, Snapshot]] = []
        self.last: Fix | None = None
        self.seen = False  # a rule saw a fix (not every one was an outlier)
        self.fed = 0

    def feed(
        self,
        fixes: Iterable[Fix],
        stored: Mapping[int, Mapping[str, Any]] | None = None,
        after: int | None = None,
    ) -> bool:
        """Feed ``fixes``; True when a checkpoint later than ``after`` (the last late fix)
        has the state ``stored`` holds for it: the replay converged, and stops there."""
        machine, engine, cell_us = self.machine, self.engine, self.cell_us
        for fix in fixes:
            self.last = fix  # the latest position, an outlier too: history shows it as sent
            self.fed += 1
            previous_t, self.previous_t = self.previous_t, fix.t
            speed = machine.feed(fix)
            if speed is None:  # kept aside as an outlier: no rule sees it
                continue
            self.seen = True
            engine.feed(fix, speed, None if machine.moving else machine.stop)
            new_cell = previous_t is not None and fix.t // cell_us != previous_t // cell_us
            if not (machine.checkpoint_due or new_cell):
                continue
            snapshot = Snapshot(machine.to_json(), engine.snapshot(), fix.t)
            self.checkpoints.append((fix.t, snapshot))
            if stored is None or after is None or fix.t <= after:
                continue
            segments_from = machine.open_segment_start
            if segments_from is not None and _same(stored.get(fix.t), snapshot):
                self.scope.until = Until(fix.t, segments_from, frozenset(engine.pending_keys()))
                return True
        return False

    def result(self) -> Replay | None:
        """The replay's rows in its scope; None if it was fed no fix."""
        last, scope = self.last, self.scope
        if last is None:
            return None
        if not self.seen:
            # Every fix an outlier: no rule saw one, so no alert is reproduced; own none (an
            # open episode is re-emitted by each fix a rule sees, and would be deleted unseen).
            scope = Scope(
                scope.trips_from, scope.stops_from, last.t, frozenset(), scope.checkpoints_after
            )
        segments, alerts, until = self.machine.segments, self.engine.outputs, scope.until
        if until is not None:  # what continues past the convergence is the stored rows'
            segments = [s for s in segments if s.start_t < until.segments_from]
            alerts = {k: v for k, v in alerts.items() if k not in until.open_keys}
        trips = [s for s in segments if isinstance(s, TripSegment)]
        stops = [s for s in segments if isinstance(s, StopSegment)]
        final = Snapshot(self.machine.to_json(), self.engine.snapshot(), last.t)
        return Replay(scope, trips, stops, alerts, self.checkpoints, final, last)


def _same(stored: Mapping[str, Any] | None, snapshot: Snapshot) -> bool:
    """The stored checkpoint's state (as its JSON column returns it) is ``snapshot``'s."""
    return stored is not None and orjson.loads(orjson.dumps(snapshot.to_json())) == stored


def replay(
    start: Snapshot | None,
    fixes: Iterable[Fix],
    params: MotionParams,
    rules: Sequence[RuleSpec],
    checkpoint_every_s: float | None = None,
) -> Replay | None:
    """Feed ``fixes`` (ascending, all newer than ``start``) from ``start``; None if none."""
    replayer = Replayer(start, params, rules, checkpoint_every_s)
    replayer.feed(fixes)
    return replayer.result()


def restart_point(watermark: int | None, batch_times: Iterable[int]) -> int | None:
    """The earliest fix of the batch at or before the watermark (a late fix), if any."""
    if watermark is None:
        return None
    late = [t for t in batch_times if t <= watermark]
    return min(late) if late else None
