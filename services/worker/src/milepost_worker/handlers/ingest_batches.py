"""``ingest_batches.process``: a batch's fixes become trips, stops, alerts and live events.

One transaction per batch: the batch row is locked (a redelivered task waits, then finds it
``processed``), every device's ``device_state`` row is locked in id order (two workers never
process one device at once), and the batch is marked ``processed`` in the same transaction as
its effects, so a crash anywhere leaves nothing half done and a retry redoes it all. Fixes
newer than a device's watermark continue from its state; a late fix recomputes the device
from the last settled stop before it (see ``milepost_worker.timeline``).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.db import unit_of_work
from milepost_common.domain.alerts import service as alert_service
from milepost_common.domain.alerts.models import AlertRule
from milepost_common.domain.devices import state as device_state
from milepost_common.domain.devices.models import Device, MotionState
from milepost_common.domain.geofences.models import Geofence
from milepost_common.domain.ingest_batches import service as batch_service
from milepost_common.domain.ingest_batches.models import IngestBatch
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.positions.models import Position
from milepost_common.domain.trips import service as trip_service
from milepost_common.domain.webhooks import delivery as webhook_delivery
from milepost_common.domain.webhooks import events as webhook_events
from milepost_common.live import LiveEvent
from milepost_common.logging import get_logger
from milepost_worker import geo, metrics, timeline
from milepost_worker.handlers import batch_leases, live, materialize
from milepost_worker.motion.machine import Fix, MotionParams
from milepost_worker.rules.engine import FIX_RULE_TYPES, RuleSpec
from milepost_worker.runtime import WorkerContext
from milepost_worker.timeutil import from_micros, to_micros, utcnow

log = get_logger("milepost.worker.batches")


def _positions() -> Select[Any]:
    return sa_select(
        col(Position.device_id),
        col(Position.org_id),
        col(Position.fix_time),
        col(Position.lat),
        col(Position.lon),
        col(Position.speed),
        col(Position.accuracy),
        col(Position.attributes),
        col(Position.course),
        col(Position.altitude),
    )


@dataclass(slots=True)
class BatchOutcome:
    status: str  # "processed", or "skipped" when already processed or unknown
    fixes: int = 0
    recomputed_devices: int = 0
    deliveries: list[uuid.UUID] = field(default_factory=list)
    alerts_created: int = 0


async def process_batch(ctx: WorkerContext, batch_id: uuid.UUID) -> BatchOutcome:
    """Process a batch exactly once in effect (idempotent; a redelivery finds it processed),
    holding its lease meanwhile (see ``batch_leases``)."""
    if not await batch_leases.claim(ctx, batch_id):
        return BatchOutcome("skipped")

    events: list[LiveEvent] = []
    async with batch_leases.renewed(ctx, batch_id), unit_of_work(ctx.db) as session:
        batch = await batch_service.lock_for_processing(session, batch_id, ctx.holder)
        if batch is None:  # processed, or claimed again since ours expired: not ours now
            return BatchOutcome("skipped")
        outcome = await _process_locked(session, batch, events)
        await batch_service.mark_processed(session, batch, utcnow())
    await live.publish(ctx.cache, events)
    return outcome


async def fail_batch(ctx: WorkerContext, batch_id: uuid.UUID, error: str) -> None:
    """Record that a batch gave up (after its last retry, or on a non-retryable error),
    unless another child holds it now."""
    async with unit_of_work(ctx.db) as session:
        failed = await batch_service.mark_failed(session, batch_id, ctx.holder, error)
    if failed:
        metrics.BATCHES_FAILED.inc()


@dataclass(slots=True)
class StaleBatches:
    """What the reconciler sends again, now ``queued``, by reason."""

    pending: list[uuid.UUID] = field(default_factory=list)
    lease_expired: list[uuid.UUID] = field(default_factory=list)


async def stale_batches(ctx: WorkerContext) -> StaleBatches:
    """Batches to send again (``batch_service.requeue_stale_batches``): ``received``/
    ``queued`` ones whose last publish attempt is ``reconcile_pending_after_s`` old (at most
    once per reconcile interval), and ``processing`` ones whose lease has expired. Resending
    one still being processed elsewhere would be harmless anyway: its claim waits for the
    row, then finds it processed."""
    w = ctx.settings.worker
    pending_after = timedelta(seconds=max(w.reconcile_pending_after_s, w.reconcile_interval_s))
    async with unit_of_work(ctx.db) as session:
        found = await batch_service.requeue_stale_batches(session, pending_after, w.batch_lease_s)
    stale = StaleBatches()
    for batch in found:
        if batch.lease_expired:
            log.warning("batch_lease_expired", batch_id=str(batch.id), holder=batch.holder)
            stale.lease_expired.append(batch.id)
        else:
            stale.pending.append(batch.id)
    return stale


async def _process_locked(
    session: AsyncSession, batch: IngestBatch, events: list[LiveEvent]
) -> BatchOutcome:
    rows = (await session.execute(_positions().where(col(Position.batch_id) == batch.id))).all()
    outcome = BatchOutcome("processed", fixes=len(rows))
    if not rows:
        return outcome
    devices = {
        d.id: d
        for d in (
            await session.execute(
                select(Device).where(col(Device.id).in_({row[0] for row in rows}))
            )
        ).scalars()
    }
    # Only fixes of each device's current tenure: one accepted before a transfer belongs to
    # a timeline the transfer closed, and must not reach into the new organization's.
    by_device: dict[uuid.UUID, list[Fix]] = defaultdict(list)
    for row in rows:
        device = devices.get(row[0])
        if device is not None and _in_tenure(_tenure(device), row[1], row[2]):
            by_device[row[0]].append(_fix(row))
    devices = {device_id: devices[device_id] for device_id in by_device}
    if not devices:
        return outcome
    orgs = {
        o.id: o
        for o in (
            await session.execute(
                select(Organization).where(
                    col(Organization.id).in_({d.org_id for d in devices.values()})
                )
            )
        ).scalars()
    }
    states = await device_state.lock_device_states(
        session, {d.id: d.org_id for d in devices.values()}
    )
    rules = await alert_service.list_enabled_rules(session, orgs.keys())
    shapes = await _geofence_shapes(session, rules)

    work: list[materialize.DeviceWork] = []
    for device_id in sorted(devices):
        device = devices[device_id]
        tenure = _tenure(device)
        org = orgs[device.org_id]
        state = states[device_id]
        specs = _rule_specs(rules, device, org, shapes)
        params = _params(device, org)
        snapshot = timeline.Snapshot.from_json(state.machine)
        batch_fixes = sorted(by_device[device_id], key=lambda f: f.t)
        late = timeline.restart_point(
            snapshot.last_t if snapshot else None, (f.t for f in batch_fixes)
        )
        if late is None:
            start = snapshot
            fixes = batch_fixes
            metrics.FIXES.labels("continue").inc(len(fixes))
        else:
            checkpoint = await trip_service.find_checkpoint_before(
                session, tenure, from_micros(late)
            )
            start = timeline.Snapshot.from_json(checkpoint.state) if checkpoint else None
            fixes = await _fixes_after(session, tenure, start.last_t if start else None)
            outcome.recomputed_devices += 1
            metrics.FIXES.labels("recompute").inc(len(fixes))
        result = timeline.replay(start, fixes, params, specs)
        if result is not None:
            work.append(
                materialize.DeviceWork(device, tenure, state, result, start, specs, late is None)
            )

    now = utcnow()
    changes = await materialize.write_segments(session, work)
    written = await materialize.write_alerts(session, work)
    changes.extend(written.events)
    for item in work:
        # Resumed from the latest state: nothing stored after the watermark to replace.
        if not item.resumed or item.result.checkpoints:
            await trip_service.replace_checkpoints(
                session,
                item.tenure,
                from_micros(item.start.last_t) if item.start else None,
                [(from_micros(t), snap.to_json()) for t, snap in item.result.checkpoints],
            )
        changes.extend(_update_state(item, events, now))
    await session.flush()
    created = written.created_alerts
    outcome.deliveries = await webhook_delivery.create_deliveries(session, changes, now)
    outcome.alerts_created = len(created)
    events.extend(
        LiveEvent(
            type="alert",
            org_id=alert.org_id,
            vehicle_id=alert.device_id,
            data=alert_service.alert_data(alert),
        )
        for alert in created
    )
    return outcome


def _fix(row: Any) -> Fix:
    return Fix(
        t=to_micros(row[2]),
        lat=row[3],
        lon=row[4],
        speed=row[5],
        accuracy=row[6],
        attributes=row[7] or {},
        course=row[8],
        altitude=row[9],
    )


def _tenure(device: Device) -> trip_service.Tenure:
    return trip_service.Tenure(device.id, device.org_id, device.assigned_at)


def _in_tenure(tenure: trip_service.Tenure, org_id: uuid.UUID, fix_time: datetime) -> bool:
    return org_id == tenure.org_id and (tenure.since is None or fix_time >= tenure.since)


async def _fixes_after(
    session: AsyncSession, tenure: trip_service.Tenure, after: int | None
) -> list[Fix]:
    """The tenure's stored fixes after ``after`` (None: all of them), in time order."""
    query = _positions().where(
        col(Position.device_id) == tenure.device_id, col(Position.org_id) == tenure.org_id
    )
    lower = tenure.floor(from_micros(after) if after is not None else None)
    if lower is not None:
        # The tenure's start is inclusive, a watermark is not.
        strict = after is not None and lower == from_micros(after)
        query = query.where(
            col(Position.fix_time) > lower if strict else col(Position.fix_time) >= lower
        )
    rows = (await session.execute(query.order_by(col(Position.fix_time)))).all()
    return [_fix(row) for row in rows]


def _params(device: Device, org: Organization) -> MotionParams:
    return MotionParams(
        min_distance_m=device.trip_min_distance_m or org.trip_min_distance_m,
        min_duration_s=float(device.trip_min_duration_s or org.trip_min_duration_s),
        stop_gap_s=float(device.trip_stop_gap_s or org.trip_stop_gap_s),
    )


async def _geofence_shapes(
    session: AsyncSession, rules: Sequence[AlertRule]
) -> dict[uuid.UUID, geo.Shape]:
    ids: set[uuid.UUID] = set()
    for rule in rules:
        raw = rule.params.get("geofence_id")
        if raw is not None:
            try:
                ids.add(uuid.UUID(str(raw)))
            except ValueError:
                continue
    if not ids:
        return {}
    shapes: dict[uuid.UUID, geo.Shape] = {}
    for fence in (
        await session.execute(select(Geofence).where(col(Geofence.id).in_(ids)))
    ).scalars():
        try:
            shapes[fence.id] = geo.parse_shape(fence.geometry, fence.radius_m)
        except (ValueError, TypeError, IndexError):
            log.warning("geofence_unreadable", geofence_id=str(fence.id))
    return shapes


def _rule_specs(
    rules: Sequence[AlertRule],
    device: Device,
    org: Organization,
    shapes: Mapping[uuid.UUID, geo.Shape],
) -> list[RuleSpec]:
    specs = []
    limit = (
        device.speed_limit_kmh
        if device.speed_limit_kmh is not None
        else org.default_speed_limit_kmh
    )
    for rule in rules:
        if (
            rule.org_id != device.org_id
            or rule.type not in FIX_RULE_TYPES
            or not alert_service.rule_applies(rule, device.id)
        ):
            continue
        shape = None
        if "geofence_id" in rule.params:
            try:
                shape = shapes.get(uuid.UUID(str(rule.params["geofence_id"])))
            except ValueError:
                shape = None
        specs.append(RuleSpec(str(rule.id), str(rule.type), rule.params, limit, shape))
    return specs


def _update_state(
    item: materialize.DeviceWork, events: list[LiveEvent], now: datetime
) -> list[webhook_events.Event]:
    """Move the state on (the latest position only forward); the device's own webhook
    events (``device.online``)."""
    state, device, result = item.state, item.device, item.result
    final = result.final
    state.machine = final.to_json()
    state.watermark = from_micros(final.last_t)
    state.motion = MotionState.MOVING if final.machine.get("moving") else MotionState.STOPPED
    state.updated_at = utcnow()
    last = result.last_fix
    fix_time = from_micros(last.t)
    values = {
        "lat": last.lat,
        "lon": last.lon,
        "speed": last.speed,
        "course": last.course,
        "altitude": last.altitude,
        "accuracy": last.accuracy,
        "attributes": dict(last.attributes),
    }
    if not device_state.record_position(state, fix_time, values):
        return []
    metrics.PROCESSING_LAG.observe(max(0.0, (utcnow() - fix_time).total_seconds()))
    events.append(
        LiveEvent(
            type="position",
            org_id=device.org_id,
            vehicle_id=device.id,
            data={
                "vehicle_id": str(device.id),
                "fix_time": fix_time.isoformat().replace("+00:00", "Z"),
                **values,
            },
        )
    )
    return materialize.device_events(item, fix_time, last.lat, last.lon, now)
