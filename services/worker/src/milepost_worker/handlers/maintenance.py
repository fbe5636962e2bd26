"""Beat jobs on the maintenance queue: offline detection (alerts and ``device.offline``),
partitions and retention."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError

from milepost_common.db import lock_timed_out, unit_of_work
from milepost_common.domain.alerts import service as alert_service
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.devices import state as device_state
from milepost_common.domain.ingest_batches import service as batch_service
from milepost_common.domain.organizations import service as organization_service
from milepost_common.domain.positions import service as position_service
from milepost_common.domain.trips import service as trip_service
from milepost_common.domain.webhooks import delivery as webhook_delivery
from milepost_common.domain.webhooks import events as webhook_events
from milepost_common.domain.webhooks import service as webhook_service
from milepost_common.live import LiveEvent
from milepost_common.logging import get_logger
from milepost_common.migrate import DEFAULT_RETENTION_DAYS
from milepost_worker import live
from milepost_worker.runtime import WorkerContext
from milepost_worker.timeutil import utcnow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

log = get_logger("milepost.worker.maintenance")


@dataclass(slots=True)
class OfflineOutcome:
    alerts_created: int = 0
    devices_offline: int = 0
    deliveries: list[uuid.UUID] = field(default_factory=list)


async def detect_offline(ctx: WorkerContext) -> OfflineOutcome:
    """Offline alerts for silent devices (idempotent per silence), ``device.offline`` for the
    devices whose status has just become offline (once per silence), their webhooks and live
    events."""
    now = utcnow()
    async with unit_of_work(ctx.db) as session:
        created = await alert_service.record_offline_alerts(session, now)
        silent = await device_state.mark_offline(session, now)
        devices = await device_service.find_devices(session, {a.device_id for a in created})
        names = {device_id: device.name for device_id, device in devices.items()}
        after_s = int(device_service.ONLINE_WINDOW.total_seconds())
        changes = [webhook_events.alert_created(a, names.get(a.device_id)) for a in created]
        changes.extend(
            webhook_events.device_offline(
                webhook_events.VehicleRef(d.device_id, d.org_id, d.name, d.unique_id),
                d.last_fix_time,
                d.lat,
                d.lon,
                after_s,
            )
            for d in silent
        )
        deliveries = await webhook_delivery.create_deliveries(session, changes, now)
    await live.publish(
        ctx.cache,
        [
            LiveEvent(
                type="alert",
                org_id=a.org_id,
                vehicle_id=a.device_id,
                data=webhook_events.alert_data(a, names.get(a.device_id)),
            )
            for a in created
        ],
    )
    return OfflineOutcome(len(created), len(silent), deliveries)


async def maintain_partitions(ctx: WorkerContext) -> int:
    """Create the daily position partitions ahead (and back to the longest retention), a
    transaction per run of days, the newest first; how many were created. Stops, logged
    (``partitions_deferred``), when positions stays locked past the lock timeout."""
    timeout_ms = ctx.settings.worker.partition_lock_timeout_ms
    async with unit_of_work(ctx.db) as session:
        runs = await position_service.list_partition_runs(session)
    created = 0
    for first, last in runs:
        try:
            async with unit_of_work(ctx.db) as session:
                created += await position_service.create_partitions(
                    session, first, last, lock_timeout_ms=timeout_ms
                )
        except DBAPIError as exc:
            if not lock_timed_out(exc):
                raise
            # Another DDL holds positions (retention dropping a partition, which itself
            # waits behind readers). Partitions are made two days ahead, so giving up until
            # the next hourly run is harmless.
            log.warning("partitions_deferred", lock_timeout_ms=timeout_ms, created=created)
            break
    return created


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The watermark stays this far behind what was deleted: an ingest transaction validated before
# a run may commit after it, and hosts' clocks differ.
RETENTION_WATERMARK_MARGIN = timedelta(days=1)


@dataclass(slots=True)
class RetentionOutcome:
    partitions_dropped: list[str] = field(default_factory=list)
    rows_deleted: dict[str, int] = field(default_factory=dict)
    # Batches whose rejected items expired and were emptied (the rows stay).
    rejected_items_cleared: int = 0
    # Partitions past the longest retention left for the next run: positions stayed locked.
    partitions_deferred: list[str] = field(default_factory=list)
    # Organizations whose pass failed (logged; their watermark stays for the next run).
    organizations_failed: list[uuid.UUID] = field(default_factory=list)


class RetentionIncomplete(Exception):
    """Retention failed for some organizations (each one logged; the others were done)."""


Expire = Callable[["AsyncSession", uuid.UUID, datetime, datetime, int], Awaitable[int]]
# What the per-organization pass deletes, table by table, in this order: each deletes at most
# ``limit`` rows of ``[since, cutoff)`` (only positions needs ``since``: its watermark).
_EXPIRE: dict[str, Expire] = {
    "positions": lambda s, org, since, cutoff, n: position_service.delete_expired_positions(
        s, org, since, cutoff, limit=n
    ),
    "trips": lambda s, org, _, cutoff, n: trip_service.delete_expired(
        s, "trips", org, cutoff, limit=n
    ),
    "stops": lambda s, org, _, cutoff, n: trip_service.delete_expired(
        s, "stops", org, cutoff, limit=n
    ),
    "alerts": lambda s, org, _, cutoff, n: alert_service.delete_expired_alerts(
        s, org, cutoff, limit=n
    ),
    "motion_checkpoints": lambda s, org, _, cutoff, n: trip_service.delete_expired(
        s, "motion_checkpoints", org, cutoff, limit=n
    ),
    # Processed or failed ones only, by received_at.
    "ingest_batches": lambda s, org, _, cutoff, n: batch_service.delete_expired_batches(
        s, org, cutoff, limit=n
    ),
    # Succeeded or dead ones only, by created_at: their payloads hold positions and names.
    "webhook_deliveries": lambda s, org, _, cutoff, n: webhook_service.delete_expired_deliveries(
        s, org, cutoff, limit=n
    ),
}


async def _in_batches(
    ctx: WorkerContext, size: int, step: Callable[..., Awaitable[int]], *args: Any
) -> int:
    """Run ``step(session, *args)`` (one bounded batch: at most ``size`` rows) in a short
    transaction of its own until a batch comes back short; the rows it touched in all."""
    total = 0
    while True:
        async with unit_of_work(ctx.db) as session:
            done = await step(session, *args)
        total += done
        if done < size:
            return total


async def apply_retention(ctx: WorkerContext, today: date | None = None) -> RetentionOutcome:
    """Drop position partitions past the longest retention; delete, in batches, each
    organization's older positions (those of organizations keeping less), trips, stops,
    alerts, checkpoints, finished ingest batches and finished webhook deliveries; empty the
    rejected items kept past their expiry (7 days). An organization whose pass fails is
    logged (``retention_failed``) and listed in ``organizations_failed``; the others go on."""
    outcome = RetentionOutcome()
    now = utcnow()
    today = today or now.date()
    async with unit_of_work(ctx.db) as session:
        retentions = await organization_service.list_retentions(session)
        longest = max([r.days for r in retentions] or [DEFAULT_RETENTION_DAYS])
        oldest_kept = today - timedelta(days=longest)
        expired_partitions = await position_service.list_expired_partitions(session, oldest_kept)
    timeout_ms = ctx.settings.worker.partition_lock_timeout_ms
    for index, name in enumerate(expired_partitions):
        try:
            async with unit_of_work(ctx.db) as session:
                await position_service.drop_partition(session, name, lock_timeout_ms=timeout_ms)
        except DBAPIError as exc:
            if not lock_timed_out(exc):
                raise
            # As for creating them (above): the next hourly run drops them; the rest of
            # retention goes on meanwhile.
            log.warning("partition_drop_deferred", partition=name, lock_timeout_ms=timeout_ms)
            outcome.partitions_deferred = expired_partitions[index:]
            break
        outcome.partitions_dropped.append(name)
    size = ctx.settings.worker.retention_batch_size
    outcome.rejected_items_cleared = await _in_batches(
        ctx, size, lambda s: batch_service.clear_expired_rejected_items(s, now, limit=size)
    )
    # What dropping the partitions guarantees: no row before this day is left.
    dropped_before = datetime.combine(oldest_kept, datetime.min.time(), tzinfo=UTC)
    for retention in retentions:
        cutoff = now - timedelta(days=retention.days)
        deleted_until = cutoff if retention.days < longest else dropped_before
        try:
            await _expire_organization(ctx, retention, cutoff, retention.days >= longest, outcome)
            async with unit_of_work(ctx.db) as session:
                await organization_service.record_retention_applied(
                    session, retention, deleted_until - RETENTION_WATERMARK_MARGIN
                )
        except Exception:
            # One organization's failure (a statement timeout) must not stop the others'
            # every hour: logged here, the run reported as failed by the task after them.
            log.exception("retention_failed", org_id=str(retention.org_id))
            outcome.organizations_failed.append(retention.org_id)
    return outcome


async def _expire_organization(
    ctx: WorkerContext,
    retention: organization_service.Retention,
    cutoff: datetime,
    keeps_longest: bool,
    outcome: RetentionOutcome,
) -> None:
    """Delete the organization's rows of every ``_EXPIRE`` table before ``cutoff``."""
    size = ctx.settings.worker.retention_batch_size
    since = retention.applied_until or _EPOCH
    for table, expire in _EXPIRE.items():
        if table == "positions" and keeps_longest:
            continue  # the partitions dropped already cover it
        deleted = await _in_batches(ctx, size, expire, retention.org_id, since, cutoff, size)
        outcome.rows_deleted[table] = outcome.rows_deleted.get(table, 0) + deleted
