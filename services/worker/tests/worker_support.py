"""Builders shared by the worker tests: fixes on a local grid, drives, the in-memory store."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select

from milepost_common.domain.alerts.models import Alert
from milepost_common.domain.trips.models import Stop, Trip
from milepost_worker.geo import EARTH_RADIUS_M
from milepost_worker.motion.machine import MICROS, Fix, MotionParams, StopSegment, TripSegment
from milepost_worker.rules.engine import AlertKey, AlertOut, RuleSpec
from milepost_worker.timeline import Replay, Replayer, Snapshot, replay, restart_point
from milepost_worker.timeutil import from_micros

LAT0, LON0 = 52.0, 13.0
_K = EARTH_RADIUS_M * math.pi / 180


def at(
    t_s: float,
    east_m: float,
    north_m: float = 0.0,
    *,
    speed: float | None = None,
    accuracy: float | None = None,
    t0_s: float = 0.0,
    **attributes: Any,
) -> Fix:
    """A fix ``east_m``/``north_m`` from (LAT0, LON0) at ``t0_s + t_s`` seconds."""
    return Fix(
        t=round((t0_s + t_s) * MICROS),
        lat=LAT0 + north_m / _K,
        lon=LON0 + east_m / (_K * math.cos(math.radians(LAT0))),
        speed=speed,
        accuracy=accuracy,
        attributes=attributes,
    )


def latlon(east_m: float, north_m: float = 0.0) -> tuple[float, float]:
    return LAT0 + north_m / _K, LON0 + east_m / (_K * math.cos(math.radians(LAT0)))


@dataclass
class MemoryStore:
    """The handler's algorithm over dicts: the model the property test checks against."""

    params: MotionParams
    rules: list[RuleSpec]
    positions: dict[int, Fix] = field(default_factory=dict)
    trips: dict[int, TripSegment] = field(default_factory=dict)
    stops: dict[int, StopSegment] = field(default_factory=dict)
    alerts: dict[AlertKey, AlertOut] = field(default_factory=dict)
    checkpoints: dict[int, Snapshot] = field(default_factory=dict)
    state: Snapshot | None = None
    created: list[AlertKey] = field(default_factory=list)
    checkpoint_every_s: float | None = None  # None: the worker's

    def ingest(self, fixes: list[Fix]) -> list[Fix]:
        fresh = [f for f in fixes if f.t not in self.positions]
        for fix in fresh:
            self.positions[fix.t] = fix
        return fresh

    def process(self, batch: list[Fix]) -> None:
        watermark = self.state.last_t if self.state else None
        late = restart_point(watermark, (f.t for f in batch))
        newer = sorted(
            (f for f in batch if watermark is None or f.t > watermark), key=lambda f: f.t
        )
        if late is None:
            self.apply(replay(self.state, newer, self.params, self.rules, self.checkpoint_every_s))
            return
        before = [a for a in self.checkpoints if a < late]
        start = self.checkpoints[max(before)] if before else None
        after = start.last_t if start else None
        fixes = [self.positions[t] for t in sorted(self.positions) if after is None or t > after]
        replayer = Replayer(start, self.params, self.rules, self.checkpoint_every_s)
        # As the checkpoints' JSON column returns them.
        stored = {t: orjson.loads(orjson.dumps(s.to_json())) for t, s in self.checkpoints.items()}
        last_late = max(f.t for f in batch if watermark is not None and f.t <= watermark)
        converged = replayer.feed(fixes, stored, last_late)
        self.apply(replayer.result())
        if converged and newer:  # the stored rows after it stay; newer fixes continue the state
            self.apply(replay(self.state, newer, self.params, self.rules, self.checkpoint_every_s))

    def apply(self, result: Replay | None) -> None:
        if result is None:
            return
        scope = result.scope
        trips = {s.start_t: s for s in result.trips}
        self.trips = {k: v for k, v in self.trips.items() if not scope.owns_trip(k)} | trips
        stops = {s.start_t: s for s in result.stops}
        self.stops = {k: v for k, v in self.stops.items() if not scope.owns_stop(k)} | stops
        kept = {k: v for k, v in self.alerts.items() if not scope.owns_alert(k)}
        for key in result.alerts:
            if key not in self.alerts:
                self.created.append(key)
        self.alerts = kept | dict(result.alerts)
        self.checkpoints = {
            k: v for k, v in self.checkpoints.items() if not scope.owns_checkpoint(k)
        } | dict(result.checkpoints)
        if scope.until is None and (self.state is None or result.final.last_t >= self.state.last_t):
            self.state = result.final


# -- database helpers (writing batches the way ingest does) ----------------------------------


def base_time_s() -> float:
    """A whole second about a day ago (position partitions exist there)."""
    import time

    return float(int(time.time()) - 86_400)


async def write_batch(session: Any, device: Any, fixes: list[Fix]) -> Any:
    """An ``ingest_batches`` row (queued) and its positions, conflict-skipped, like ingest."""
    import uuid as _uuid

    from milepost_common.domain.ingest_batches.models import BatchSource, BatchStatus, IngestBatch
    from milepost_common.domain.positions.models import Position
    from milepost_worker.timeutil import from_micros, utcnow

    batch = IngestBatch(
        org_id=device.org_id,
        source=BatchSource.JSON,
        status=BatchStatus.QUEUED,
        accepted=len(fixes),
        device_ids=[str(device.id)],
        queued_at=utcnow(),
    )
    session.add(batch)
    await session.flush()
    if fixes:
        await session.execute(
            insert(Position)
            .values(
                [
                    {
                        "device_id": device.id,
                        "org_id": device.org_id,
                        "fix_time": from_micros(f.t),
                        "lat": f.lat,
                        "lon": f.lon,
                        "speed": f.speed,
                        "accuracy": f.accuracy,
                        "attributes": dict(f.attributes),
                        "batch_id": batch.id,
                    }
                    for f in fixes
                ]
            )
            .on_conflict_do_nothing()
        )
    await session.flush()
    assert isinstance(batch.id, _uuid.UUID)
    return batch


# -- comparing stored rows with the in-memory model ------------------------------------------


def golden_drive(t0: float) -> list[Fix]:
    """Parked, 30 legs of 90 m, parked: one trip (290..580 s) between two stops."""
    fixes = [at(t, 0, t0_s=t0) for t in range(0, 300, 10)]
    fixes += [at(310 + 10 * i, 90.0 * (i + 1), t0_s=t0, speed=32.4) for i in range(30)]
    fixes += [at(t, 2700.0, t0_s=t0) for t in range(610, 1000, 10)]
    return fixes


async def rows(session: Any, device: Any) -> dict[str, Any]:
    trips = (
        (
            await session.execute(
                select(Trip).where(col(Trip.device_id) == device.id).order_by(col(Trip.start_time))
            )
        )
        .scalars()
        .all()
    )
    stops = (
        (
            await session.execute(
                select(Stop).where(col(Stop.device_id) == device.id).order_by(col(Stop.start_time))
            )
        )
        .scalars()
        .all()
    )
    alerts = (
        (
            await session.execute(
                select(Alert)
                .where(col(Alert.device_id) == device.id)
                .order_by(col(Alert.occurred_at))
            )
        )
        .scalars()
        .all()
    )
    return {
        "trips": [
            (t.start_time, t.end_time, round(t.distance_m, 6), round(t.max_speed, 6)) for t in trips
        ],
        "stops": [(s.start_time, s.end_time, round(s.lat, 9), round(s.lon, 9)) for s in stops],
        "alerts": [(str(a.rule_id), a.occurred_at, str(a.type), a.details) for a in alerts],
    }


def expected_rows(store: MemoryStore) -> dict[str, Any]:
    def end(seg: Any) -> Any:
        return from_micros(seg.end_t) if seg.closed else None

    return {
        "trips": [
            (from_micros(t.start_t), end(t), round(t.distance_m, 6), round(t.max_speed, 6))
            for _, t in sorted(store.trips.items())
        ],
        "stops": [
            (from_micros(s.start_t), end(s), round(s.lat, 9), round(s.lon, 9))
            for _, s in sorted(store.stops.items())
        ],
        "alerts": [
            (a.rule_id, from_micros(a.occurred_at), a.type, a.details)
            for _, a in sorted(store.alerts.items(), key=lambda kv: kv[0][1])
        ],
    }
