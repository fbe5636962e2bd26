"""Beat jobs on the maintenance queue: offline detection (alerts and ``device.offline``),
partitions and retention."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import text
from sqlmodel import select

from milepost_common.db import unit_of_work
from milepost_common.domain.alerts import service as alert_service
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.devices import state as device_state
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.webhooks import delivery as webhook_delivery
from milepost_common.domain.webhooks import events as webhook_events
from milepost_common.live import LiveEvent
from milepost_common.logging import get_logger
from milepost_common.migrate import DEFAULT_RETENTION_DAYS, ensure_partitions
from milepost_worker import live
from milepost_worker.runtime import WorkerContext
from milepost_worker.timeutil import utcnow

log = get_logger("milepost.worker.maintenance")

_PARTITION = re.compile(r"^positions_p(\d{8})$")


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
                data=alert_service.alert_data(a),
            )
            for a in created
        ],
    )
    return OfflineOutcome(len(created), len(silent), deliveries)


async def maintain_partitions(ctx: WorkerContext) -> int:
    """Create the daily position partitions ahead (and back to the longest retention)."""
    async with ctx.db.engine.begin() as conn:
        return await ensure_partitions(conn)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The watermark stays this far behind what was deleted: an ingest transaction validated before
# a run may commit after it, and hosts' clocks differ.
RETENTION_WATERMARK_MARGIN = timedelta(days=1)


@dataclass(slots=True)
class RetentionOutcome:
    partitions_dropped: list[str] = field(default_factory=list)
    rows_deleted: dict[str, int] = field(default_factory=dict)


async def apply_retention(ctx: WorkerContext, today: date | None = None) -> RetentionOutcome:
    """Drop position partitions past the longest retention; delete, in batches, the older
    positions, trips, stops, alerts and checkpoints of organizations keeping less."""
    outcome = RetentionOutcome()
    now = utcnow()
    today = today or now.date()
    async with unit_of_work(ctx.db) as session:
        orgs = [
            (o.id, o.retention_days, o.retention_applied_until)
            for o in (await session.execute(select(Organization))).scalars()
        ]
        partitions = [
            str(n)
            for n in (
                await session.execute(
                    text(
                        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'positions'"
                    )
                )
            ).scalars()
        ]
    longest = max([days for _, days, _ in orgs] or [DEFAULT_RETENTION_DAYS])
    oldest_kept = today - timedelta(days=longest)
    for name in sorted(partitions):
        match = _PARTITION.match(name)
        if match is None:
            continue
        day = datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC).date()
        if day + timedelta(days=1) <= oldest_kept:
            async with ctx.db.engine.begin() as conn:
                await conn.execute(text(f'ALTER TABLE positions DETACH PARTITION "{name}"'))
                await conn.execute(text(f'DROP TABLE "{name}"'))
            outcome.partitions_dropped.append(name)
    size = ctx.settings.worker.retention_batch_size
    # positions has no org_id index (it would slow every ingest write): the days before the
    # organization's watermark are deleted already, so only the partitions after it are read.
    statements = {
        "positions": "DELETE FROM positions WHERE (device_id, fix_time) IN (SELECT device_id, "
        "fix_time FROM positions WHERE org_id = :org AND fix_time >= :since "
        "AND fix_time < :cutoff LIMIT :n)",
        "trips": "DELETE FROM trips WHERE id IN (SELECT id FROM trips WHERE org_id = :org "
        "AND start_time < :cutoff LIMIT :n)",
        "stops": "DELETE FROM stops WHERE id IN (SELECT id FROM stops WHERE org_id = :org "
        "AND start_time < :cutoff LIMIT :n)",
        "alerts": "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts WHERE org_id = :org "
        "AND occurred_at < :cutoff LIMIT :n)",
        "motion_checkpoints": "DELETE FROM motion_checkpoints WHERE (device_id, anchor_time) IN "
        "(SELECT device_id, anchor_time FROM motion_checkpoints "
        "WHERE org_id = :org AND anchor_time < :cutoff LIMIT :n)",
    }
    # What dropping the partitions guarantees: no row before this day is left.
    dropped_before = datetime.combine(oldest_kept, datetime.min.time(), tzinfo=UTC)
    for org_id, days, applied_until in orgs:
        cutoff = now - timedelta(days=days)
        params = {"org": org_id, "cutoff": cutoff, "since": applied_until or _EPOCH, "n": size}
        deleted_until = cutoff if days < longest else dropped_before
        for table, sql in statements.items():
            if table == "positions" and days >= longest:
                continue  # the partitions dropped above already cover it
            while True:
                async with ctx.db.engine.begin() as conn:
                    deleted = (await conn.execute(text(sql), params)).rowcount
                outcome.rows_deleted[table] = outcome.rows_deleted.get(table, 0) + deleted
                if deleted < size:
                    break
        async with ctx.db.engine.begin() as conn:
            # Not over a retention change made meanwhile (which cleared it).
            await conn.execute(
                text(
                    "UPDATE organizations SET retention_applied_until = :until WHERE id = :org"
                    " AND retention_days = :days AND retention_applied_until IS NOT DISTINCT"
                    " FROM :since_was"
                ),
                {
                    "org": org_id,
                    "until": deleted_until - RETENTION_WATERMARK_MARGIN,
                    "days": days,
                    "since_was": applied_until,
                },
            )
    return outcome
