"""One device's timeline: replay fixes from a snapshot, and what the stored rows must become.

Pure. The handler (and the in-memory model in the tests) decides where to start: the device's
latest state for fixes newer than its watermark, else the last settled stop (checkpoint)
before the earliest late fix, else the beginning. Replaying from there produces the final form
of every trip, stop, checkpoint and fix-derived alert in the returned ``Scope``; stored rows in
that scope that the replay did not produce are deleted, the others kept by key (trips and
stops by ``start_time``, alerts by ``(rule_id, occurred_at)``), so ids and acknowledgements
survive a recomputation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from milepost_worker.motion.machine import (
    Fix,
    MotionMachine,
    MotionParams,
    StopSegment,
    TripSegment,
)
from milepost_worker.rules.engine import AlertKey, AlertOut, RuleEngine, RuleSpec


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


@dataclass(slots=True)
class Scope:
    """The stored rows a replay from a snapshot owns (None: every row of the device)."""

    trips_from: int | None
    stops_from: int | None
    alerts_after: int | None
    alert_keys: frozenset[AlertKey]
    checkpoints_after: int | None

    def owns_trip(self, start_t: int) -> bool:
        return self.trips_from is None or start_t >= self.trips_from

    def owns_stop(self, start_t: int) -> bool:
        return self.stops_from is None or start_t >= self.stops_from

    def owns_alert(self, key: AlertKey) -> bool:
        return self.alerts_after is None or key[1] > self.alerts_after or key in self.alert_keys

    def owns_checkpoint(self, anchor_t: int) -> bool:
        return self.checkpoints_after is None or anchor_t > self.checkpoints_after


@dataclass(slots=True)
class Replay:
    scope: Scope
    trips: list[TripSegment]
    stops: list[StopSegment]
    alerts: dict[AlertKey, AlertOut]
    checkpoints: list[tuple[int, Snapshot]]
    final: Snapshot
    last_fix: Fix
    speeds: list[float] = field(default_factory=list)


def scope_of(start: Snapshot | None, params: MotionParams, rules: Sequence[RuleSpec]) -> Scope:
    if start is None:
        return Scope(None, None, None, frozenset(), None)
    machine = MotionMachine.from_json(params, start.machine)
    anchor_t = machine.anchor_t if machine.anchor_t is not None else start.last_t
    open_start = machine.open_segment_start
    stops_from = anchor_t if machine.moving or open_start is None else open_start
    pending = RuleEngine(rules, start.rules).pending_keys()
    return Scope(anchor_t, stops_from, start.last_t, frozenset(pending), start.last_t)


def replay(
    start: Snapshot | None, fixes: Iterable[Fix], params: MotionParams, rules: Sequence[RuleSpec]
) -> Replay | None:
    """Feed ``fixes`` (ascending, all newer than ``start``) from ``start``; None if none."""
    scope = scope_of(start, params, rules)
    machine = MotionMachine.from_json(params, start.machine if start else None)
    engine = RuleEngine(rules, start.rules if start else None)
    checkpoints: list[tuple[int, Snapshot]] = []
    last: Fix | None = None
    speeds: list[float] = []
    for fix in fixes:
        last = fix  # the latest position, an outlier too: history shows it as sent
        speed = machine.feed(fix)
        if speed is None:  # kept aside as an outlier: no rule sees it
            continue
        speeds.append(speed)
        engine.feed(fix, speed, None if machine.moving else machine.stop)
        if machine.checkpoint_due:
            checkpoints.append((fix.t, Snapshot(machine.to_json(), engine.snapshot(), fix.t)))
    if last is None:
        return None
    if not speeds:
        # Every fix an outlier: no rule saw one, so no alert is reproduced; own none (an open
        # episode is re-emitted by each fix a rule sees, and would be deleted unseen).
        scope = Scope(
            scope.trips_from, scope.stops_from, last.t, frozenset(), scope.checkpoints_after
        )
    trips = [s for s in machine.segments if isinstance(s, TripSegment)]
    stops = [s for s in machine.segments if isinstance(s, StopSegment)]
    final = Snapshot(machine.to_json(), engine.snapshot(), last.t)
    return Replay(scope, trips, stops, engine.outputs, checkpoints, final, last, speeds)


def restart_point(watermark: int | None, batch_times: Iterable[int]) -> int | None:
    """The earliest fix of the batch at or before the watermark (a late fix), if any."""
    if watermark is None:
        return None
    late = [t for t in batch_times if t <= watermark]
    return min(late) if late else None
