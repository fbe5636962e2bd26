"""``ingest_batches.process``: a batch's fixes become trips, stops, alerts and live events;
and the reconciler that sends batches left behind again.

One transaction per batch: the batch row is locked (a redelivered task waits, then finds it
``processed``), every device's ``device_state`` row is locked in id order (two workers never
process one device at once), and the batch is marked ``processed`` in the same transaction as
its effects, so a crash anywhere leaves nothing half done and a retry redoes it all. Fixes
newer than a device's watermark continue from its state; a late fix recomputes the device
from the last settled stop before it until the recomputation converges with the stored
checkpoints, reading its fixes a chunk at a time (see ``milepost_worker.timeline``).

This module orchestrates: the reads, the writes and what changes are the domain's
(``trips.service.materialize_segments``, ``alerts.service.reconcile_alerts``, the batch's
marks in ``ingest_batches.service``); the replay is the worker's pure code (``timeline``,
``motion``, ``rules``), whose microseconds are turned into the domain's values here.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.db import unit_of_work
from milepost_common.domain.alerts import service as alert_service
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.devices import state as device_state
from milepost_common.domain.devices.models import Device, DeviceState
from milepost_common.domain.ingest_batches import service as batch_service
from milepost_common.domain.ingest_batches.models import IngestBatch
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.positions import service as position_service
from milepost_common.domain.positions.schemas import LatestPositionRead
from milepost_common.domain.trips import service as trip_service
from milepost_common.domain.webhooks import delivery as webhook_delivery
from milepost_common.domain.webhooks import events as webhook_events
from milepost_common.live import LiveEvent
from milepost_common.logging import get_logger
from milepost_worker import batch_leases, live, metrics, timeline
from milepost_worker.motion.machine import Fix, MotionParams, StopSegment, TripSegment
from milepost_worker.rules import specs as rule_specs
from milepost_worker.rules.engine import AlertOut, RuleSpec
from milepost_worker.runtime import WorkerContext
from milepost_worker.timeutil import from_micros, to_micros, utcnow

log = get_logger("milepost.worker.batches")

# Fixes a late fix's replay reads at a time: memory stays bounded however far back it goes.
REPLAY_CHUNK = 10_000


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
    rows = await position_service.list_batch_fixes(session, batch.id)
    outcome = BatchOutcome("processed", fixes=len(rows))
    if not rows:
        return outcome
    found = await device_service.find_devices_with_organizations(session, {r[0] for r in rows})
    # Only fixes of each device's current tenure: one accepted before a transfer belongs to
    # a timeline the transfer closed, and must not reach into the new organization's.
    by_device: dict[uuid.UUID, list[Fix]] = defaultdict(list)
    for row in rows:
        pair = found.get(row[0])
        if pair is not None and _in_tenure(_tenure(pair[0]), row[1], row[2]):
            by_device[row[0]].append(_fix(row))
    if not by_device:
        return outcome
    devices = {device_id: found[device_id][0] for device_id in by_device}
    orgs = {found[device_id][1].id: found[device_id][1] for device_id in by_device}
    states = await device_state.lock_device_states(
        session, {d.id: d.org_id for d in devices.values()}
    )
    rules = await alert_service.list_enabled_rules(session, orgs.keys())
    shapes = rule_specs.shapes_of(rules)
    covered = rule_specs.coverage(rules)

    work: list[DeviceWork] = []
    for device_id in sorted(devices):
        device = devices[device_id]
        tenure = _tenure(device)
        org = orgs[device.org_id]
        state = states[device_id]
        specs = rule_specs.rule_specs(rules, device, org, shapes, covered)
        params = _params(device, org)
        snapshot = timeline.Snapshot.from_json(state.machine)
        batch_fixes = sorted(by_device[device_id], key=lambda f: f.t)
        late = timeline.restart_point(
            snapshot.last_t if snapshot else None, (f.t for f in batch_fixes)
        )
        newer = batch_fixes
        if late is not None and snapshot is not None:
            last_late = max(f.t for f in batch_fixes if f.t <= snapshot.last_t)
            start, result = await _replay_late(session, tenure, late, last_late, params, specs)
            outcome.recomputed_devices += 1
            if result is not None:
                work.append(DeviceWork(device, tenure, state, result, start, specs, False))
            if result is None or result.scope.until is None:
                continue  # it replayed the batch's newer fixes too
            # Converged: the stored rows after it stay; newer fixes continue from the state.
            newer = [f for f in batch_fixes if f.t > snapshot.last_t]
        metrics.FIXES.labels("continue").inc(len(newer))
        result = timeline.replay(snapshot, newer, params, specs)
        if result is not None:
            work.append(DeviceWork(device, tenure, state, result, snapshot, specs, True))

    now = utcnow()
    changes = await trip_service.materialize_segments(session, [_segments(w) for w in work])
    reconciled = await alert_service.reconcile_alerts(session, [_alerts(w) for w in work])
    changes.extend(reconciled.events)
    for item in work:
        until = item.result.scope.until
        # Resumed from the latest state: nothing stored after the watermark to replace.
        if not item.resumed or item.result.checkpoints:
            await trip_service.replace_checkpoints(
                session,
                item.tenure,
                from_micros(item.start.last_t) if item.start else None,
                [(from_micros(t), snap.to_json()) for t, snap in item.result.checkpoints],
                from_micros(until.t) if until else None,
            )
        if until is None:  # a replay that converged left the device's state as it was
            changes.extend(_update_state(item, events, now))
    await session.flush()
    created = reconciled.created
    outcome.deliveries = await webhook_delivery.create_deliveries(session, changes, now)
    outcome.alerts_created = len(created)
    events.extend(
        LiveEvent(
            type="alert",
            org_id=alert.org_id,
            vehicle_id=alert.device_id,
            data=webhook_events.alert_data(alert, devices[alert.device_id].name),
        )
        for alert in created
    )
    return outcome


@dataclass(slots=True)
class DeviceWork:
    device: Device
    tenure: trip_service.Tenure
    state: DeviceState
    result: timeline.Replay
    start: timeline.Snapshot | None
    rules: list[RuleSpec]
    resumed: bool  # continued from the device's latest state (no late fix, or after one)


async def _replay_late(
    session: AsyncSession,
    tenure: trip_service.Tenure,
    late: int,
    last_late: int,
    params: MotionParams,
    specs: list[RuleSpec],
) -> tuple[timeline.Snapshot | None, timeline.Replay | None]:
    """Replay the device from its checkpoint before ``late`` (the batch's first late fix) to
    its last fix, or until it converges with a checkpoint stored past ``last_late``: a fix
    months late costs what the days until its next settled stop cost, not the months since."""
    checkpoint = await trip_service.find_checkpoint_before(session, tenure, from_micros(late))
    start = timeline.Snapshot.from_json(checkpoint.state) if checkpoint else None
    replayer = timeline.Replayer(start, params, specs)
    after = _moment(start)
    while True:
        rows = await position_service.list_fixes_after(
            session, tenure.device_id, tenure.org_id, tenure.since, after, REPLAY_CHUNK
        )
        if not rows:
            break
        fixes = [_fix(row) for row in rows]
        stored: dict[int, dict[str, Any]] = {}
        if fixes[-1].t > last_late:
            lower = from_micros(last_late) if after is None else max(after, from_micros(last_late))
            states = await trip_service.checkpoint_states(session, tenure, lower, rows[-1][2])
            stored = {to_micros(anchor): state for anchor, state in states}
        if replayer.feed(fixes, stored, last_late) or len(rows) < REPLAY_CHUNK:
            break
        after = rows[-1][2]
    metrics.FIXES.labels("recompute").inc(replayer.fed)
    return start, replayer.result()


def _fix(row: position_service.StoredFix) -> Fix:
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


def _moment(snapshot: timeline.Snapshot | None) -> datetime | None:
    return from_micros(snapshot.last_t) if snapshot is not None else None


def _at(t: int | None) -> datetime | None:
    return from_micros(t) if t is not None else None


def _params(device: Device, org: Organization) -> MotionParams:
    return MotionParams(
        min_distance_m=device.trip_min_distance_m or org.trip_min_distance_m,
        min_duration_s=float(device.trip_min_duration_s or org.trip_min_duration_s),
        stop_gap_s=float(device.trip_stop_gap_s or org.trip_stop_gap_s),
        max_speed_kmh=org.max_speed_kmh,
    )


def _trip_span(trip: TripSegment) -> trip_service.TripSpan:
    return trip_service.TripSpan(
        start_time=from_micros(trip.start_t),
        end_time=from_micros(trip.end_t) if trip.closed else None,
        start_lat=trip.start_lat,
        start_lon=trip.start_lon,
        end_lat=trip.end_lat,
        end_lon=trip.end_lon,
        distance_m=trip.distance_m,
        duration_s=trip.duration_s,
        avg_speed=trip.avg_speed,
        max_speed=trip.max_speed,
    )


def _stop_span(stop: StopSegment) -> trip_service.StopSpan:
    return trip_service.StopSpan(
        start_time=from_micros(stop.start_t),
        end_time=from_micros(stop.end_t) if stop.closed else None,
        lat=stop.lat,
        lon=stop.lon,
        duration_s=stop.duration_s,
    )


def _segments(item: DeviceWork) -> trip_service.DeviceSegments:
    """The replay's trips and stops, for ``trip_service.materialize_segments``."""
    scope = item.result.scope
    return trip_service.DeviceSegments(
        tenure=item.tenure,
        vehicle_name=item.device.name,
        trips_from=_at(scope.trips_from),
        stops_from=_at(scope.stops_from),
        trips=[_trip_span(trip) for trip in item.result.trips],
        stops=[_stop_span(stop) for stop in item.result.stops],
        until=_at(scope.until.segments_from) if scope.until else None,
    )


def _fix_alert(out: AlertOut) -> alert_service.FixAlert:
    return alert_service.FixAlert(
        rule_id=uuid.UUID(out.rule_id),
        type=out.type,
        occurred_at=from_micros(out.occurred_at),
        lat=out.lat,
        lon=out.lon,
        details=out.details,
    )


def _alerts(item: DeviceWork) -> alert_service.DeviceAlerts:
    """The replay's fix-derived alerts, for ``alert_service.reconcile_alerts``."""
    scope = item.result.scope
    until = scope.until
    return alert_service.DeviceAlerts(
        device_id=item.device.id,
        org_id=item.tenure.org_id,
        since=item.tenure.since,
        vehicle_name=item.device.name,
        rule_ids=[uuid.UUID(rule.id) for rule in item.rules],
        after=_at(scope.alerts_after),
        open_keys=[(uuid.UUID(rule_id), from_micros(t)) for rule_id, t in scope.alert_keys],
        resumed=item.resumed,
        alerts=[_fix_alert(out) for out in item.result.alerts.values()],
        until=_at(until.t) if until else None,
        kept_keys=[(uuid.UUID(rule_id), from_micros(t)) for rule_id, t in until.open_keys]
        if until
        else (),
    )


def _update_state(
    item: DeviceWork, events: list[LiveEvent], now: datetime
) -> list[webhook_events.Event]:
    """Move the state on (the latest position only forward); the device's own webhook
    events (``device.online``)."""
    state, device, result = item.state, item.device, item.result
    final = result.final
    device_state.continue_from(
        state,
        final.to_json(),
        from_micros(final.last_t),
        moving=bool(final.machine.get("moving")),
    )
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
    # The public shape of the vehicle's latest position, as GET /positions/latest answers it.
    named = {"vehicle_id": device.id, "vehicle_name": device.name, "vehicle_plate": device.plate}
    latest = LatestPositionRead.model_validate({**named, "fix_time": fix_time, **values})
    events.append(
        LiveEvent(
            type="position",
            org_id=device.org_id,
            vehicle_id=device.id,
            data=latest.model_dump(mode="json"),
        )
    )
    return device_state.went_online(state, device, fix_time, last.lat, last.lon, now)
