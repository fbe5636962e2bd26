"""Alerts: written as the worker derives them, reconciled by ``(rule_id, device_id,
occurred_at)``; read and acknowledged through the public API.

A recomputation updates an alert in place (its ``id`` and acknowledgement survive, and
its ``occurred_at`` follows its episode's start when late fixes move it) and removes the
ones that no longer happen (:func:`reconcile_alerts`, with the webhook events of
what changed: ``alert.created`` for a new row, ``alert.ended`` when ``details.end_time`` was
null or the alert is new). Reading and acknowledging are the public API's (and the map's)
use cases, at the end; rule management is ``domain/alert_rules``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from milepost_common.domain import paging
from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts.errors import AlertNotFound
from milepost_common.domain.alerts.models import Alert, AlertType
from milepost_common.domain.alerts.repository import AlertRepository, AlertScope
from milepost_common.domain.alerts.schemas import AlertFilters, AlertRead
from milepost_common.domain.audit import service as audit
from milepost_common.domain.devices import names
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.devices import state as device_state
from milepost_common.domain.geofences.schemas import WatchedFence
from milepost_common.domain.principals import Principal
from milepost_common.domain.webhooks import events as webhook_events

SORTABLE = ("occurred_at",)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class EnabledRule(NamedTuple):
    """An enabled rule and the geofence it watches (its organization's geofence of the id
    its ``params`` name; None for a rule that names none or a missing one)."""

    rule: AlertRule
    geofence: WatchedFence | None


async def list_enabled_rules(
    session: AsyncSession, org_ids: Collection[uuid.UUID]
) -> list[EnabledRule]:
    """The organizations' enabled alert rules with their geofences (the worker's
    evaluation)."""
    pairs = await AlertRepository(session).enabled_rules_with_geofences(org_ids)
    return [EnabledRule(rule, fence) for rule, fence in pairs]


def rule_applies(rule: AlertRule, device_id: uuid.UUID) -> bool:
    return rule.vehicle_ids is None or device_id in rule.vehicle_ids


@dataclass(frozen=True, slots=True)
class FixAlert:
    """An alert as a replay of fixes produced it (its rule's current view of the episode)."""

    rule_id: uuid.UUID
    type: str
    occurred_at: datetime
    lat: float
    lon: float
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeviceAlerts:
    """A replay's fix-derived alerts of one device's tenure (from ``since``, None: no bound),
    for the rules it evaluated. The replay owns the stored alerts of those rules after
    ``after`` (None: all) and those with one of ``open_keys`` (episodes open at its start);
    one ``resumed`` from the device's latest state owns nothing stored after its watermark
    but what ``open_keys`` and its own alerts name. One that converged owns none after
    ``until`` nor any of ``kept_keys`` (episodes open there, which the stored rows continue)."""

    device_id: uuid.UUID
    org_id: uuid.UUID
    since: datetime | None
    vehicle_name: str | None
    rule_ids: Collection[uuid.UUID]
    after: datetime | None
    open_keys: Collection[tuple[uuid.UUID, datetime]]
    resumed: bool
    alerts: Sequence[FixAlert]
    until: datetime | None = None
    kept_keys: Collection[tuple[uuid.UUID, datetime]] = ()

    def scope(self) -> AlertScope:
        keys = set(self.open_keys)
        if self.resumed:
            keys.update((a.rule_id, a.occurred_at) for a in self.alerts)
        return AlertScope(
            device_id=self.device_id,
            org_id=self.org_id,
            since=self.since,
            rule_ids=self.rule_ids,
            after=self.after,
            keys=keys,
            keys_only=self.resumed,
            until=self.until,
            excluded=self.kept_keys,
        )


@dataclass(slots=True)
class ReconciledAlerts:
    """New alerts, and the webhook events of every change (new alerts' included)."""

    created: list[Alert] = field(default_factory=list)
    events: list[webhook_events.Event] = field(default_factory=list)


_AlertKey = tuple[uuid.UUID, uuid.UUID, datetime]  # (device_id, rule_id, occurred_at)


def _ends(details: Mapping[str, Any] | None) -> bool:
    return details is not None and details.get("end_time") is not None


async def reconcile_alerts(
    session: AsyncSession, devices: Sequence[DeviceAlerts]
) -> ReconciledAlerts:
    """Reconcile the devices' fix-derived alerts in their replays' scopes: new ones are
    inserted, changed ones updated in place (id and acknowledgement kept), one whose
    episode now starts elsewhere moved there in place (``_moved_alerts``), stored ones the
    replay no longer produces deleted. Returns the new ones with the events
    ``alert.created`` and ``alert.ended``. Idempotent: the same replay again changes
    nothing and derives no new event."""
    alerts = AlertRepository(session)
    existing = await alerts.list_in_scopes([d.scope() for d in devices if d.rule_ids])
    by_key = {(a.device_id, a.rule_id, a.occurred_at): a for a in existing}
    wanted: dict[_AlertKey, tuple[DeviceAlerts, FixAlert]] = {
        (device.device_id, out.rule_id, out.occurred_at): (device, out)
        for device in devices
        for out in device.alerts
    }
    gone = [alert for key, alert in by_key.items() if key not in wanted]
    moved = _moved_alerts(gone, wanted, by_key.keys())
    kept = {alert.id for alert in moved.values()}
    await alerts.delete_ids(alert.id for alert in gone if alert.id not in kept)
    names = {device.device_id: device.vehicle_name for device in devices}
    reconciled = ReconciledAlerts()
    new_rows = []
    for key, (device, out) in wanted.items():
        alert = by_key.get(key) or moved.get(key)
        if alert is None:
            new_rows.append(
                {
                    "org_id": device.org_id,
                    "device_id": device.device_id,
                    "rule_id": out.rule_id,
                    "type": out.type,
                    "occurred_at": out.occurred_at,
                    "lat": out.lat,
                    "lon": out.lon,
                    "details": out.details,
                }
            )
        elif (alert.occurred_at, alert.details, alert.lat, alert.lon) != (
            out.occurred_at,
            out.details,
            out.lat,
            out.lon,
        ):
            now_ended = _ends(out.details) and not _ends(alert.details)
            values = {
                "occurred_at": out.occurred_at,
                "details": out.details,
                "lat": out.lat,
                "lon": out.lon,
            }
            await alerts.update(alert.id, values)
            for attribute, value in values.items():
                set_committed_value(alert, attribute, value)
            if now_ended:
                reconciled.events.append(webhook_events.alert_ended(alert, device.vehicle_name))
    reconciled.created = await alerts.insert_new(new_rows)
    for alert in reconciled.created:
        name = names[alert.device_id]
        reconciled.events.append(webhook_events.alert_created(alert, name))
        if _ends(alert.details):
            reconciled.events.append(webhook_events.alert_ended(alert, name))
    return reconciled


def _moved_alerts(
    gone: Sequence[Alert],
    wanted: Mapping[_AlertKey, tuple[DeviceAlerts, FixAlert]],
    stored: Collection[_AlertKey],
) -> dict[_AlertKey, Alert]:
    """Stored alerts the replay no longer produces under their key but as a new alert of the
    same episode (late fixes moved its start), by their new key. Such an alert is moved, not
    replaced, so the alert the owner was told of (``alert.created``, perhaps acknowledged)
    stays the episode's one. Its episode is the replay's alert of the same rule and device
    whose span overlaps it, the latest one starting before it, else the first after; when
    that one is stored already, the two episodes merged and the gone one is deleted."""
    moved: dict[_AlertKey, Alert] = {}
    for alert in sorted(gone, key=lambda a: a.occurred_at):
        span = _span(alert.occurred_at, alert.details)
        overlapping = sorted(
            key
            for key, (_, out) in wanted.items()
            if key[:2] == (alert.device_id, alert.rule_id)
            and _overlap(span, _span(out.occurred_at, out.details))
        )
        before = [key for key in overlapping if key[2] < alert.occurred_at]
        owner = before[-1] if before else overlapping[0] if overlapping else None
        if owner is not None and owner not in stored and owner not in moved:
            moved[owner] = alert
    return moved


def _span(occurred_at: datetime, details: Mapping[str, Any] | None) -> tuple[datetime, datetime]:
    """An alert's episode, open-ended while it lasts (and for alerts with no ``end_time``)."""
    end = details.get("end_time") if details else None
    return occurred_at, datetime.fromisoformat(end) if end else datetime.max.replace(tzinfo=UTC)


def _overlap(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


async def end_open_alerts(
    session: AsyncSession, device_id: uuid.UUID, org_id: uuid.UUID, at: datetime
) -> list[Alert]:
    """End the device's open episodes of ``org_id`` (overspeed, idle, a geofence dwell) at
    ``at``, its last fix there: a transfer ends the tenure they belong to, and the worker
    never touches an earlier tenure's rows again. The alerts ended."""
    alerts = await AlertRepository(session).open_of_device(device_id, org_id)
    for alert in alerts:
        _end(alert, at)
        session.add(alert)
    await session.flush()
    return alerts


async def end_rule_episodes(
    session: AsyncSession, rule: AlertRule, covers: Callable[[uuid.UUID], bool]
) -> list[webhook_events.Event]:
    """End the rule's open episodes on the vehicles it no longer ``covers`` (it was disabled
    or deleted, a vehicle left its list, a geofence rule watches another fence): the worker
    evaluates a rule only where it applies, so nothing else would ever end them. Each ends
    at its vehicle's last processed fix, under the worker's per-device lock (no batch is
    half-way through meanwhile). Their ``alert.ended`` events, for the caller to deliver."""
    # A batch in flight may be opening an episode with the rule as it read it: once it has
    # committed (and with the next ones held off) the read below sees every episode open.
    await device_state.wait_for_batches(session, rule.org_id)
    repository = AlertRepository(session)
    uncovered = {
        alert.device_id: alert.org_id
        for alert in await repository.open_of_rule(rule.id)
        if not covers(alert.device_id)
    }
    if not uncovered:
        return []
    states = await device_state.lock_device_states(session, uncovered)
    events = []
    # Read again under the locks: a batch may have ended or moved an episode meanwhile.
    for alert in await repository.open_of_rule(rule.id):
        if alert.device_id not in states:
            continue
        last_fix = states[alert.device_id].last_fix_time
        _end(alert, max(last_fix, alert.occurred_at) if last_fix else alert.occurred_at)
        session.add(alert)
        device_state.forget_rule(states[alert.device_id], rule.id)
        device = await device_service.get_any_device(session, alert.device_id)
        name = names.name_of(device, alert.org_id, alert.occurred_at)
        events.append(webhook_events.alert_ended(alert, name))
    await session.flush()
    return events


def _end(alert: Alert, at: datetime) -> None:
    ended = {**alert.details, "end_time": _iso(at)}
    if "duration_s" in ended:  # idle
        ended["duration_s"] = max(0.0, (at - alert.occurred_at).total_seconds())
    alert.details = ended


async def record_offline_alerts(session: AsyncSession, now: datetime) -> list[Alert]:
    """Offline alerts for devices silent longer than each offline rule's ``after_s``.

    Idempotent: ``occurred_at`` is the last fix plus ``after_s``, so a second run (or a second
    beat) finds the alert already there and creates nothing; and one silence is alerted once
    by a rule, though its ``after_s`` is changed meanwhile (its alert names the last fix).
    """
    rules = await AlertRepository(session).enabled_rules_of_type(AlertType.OFFLINE)
    created: list[Alert] = []
    if not rules:
        return created
    shortest = min(_after_s(r) for r in rules)
    silent = await device_state.list_silent_devices(session, now - timedelta(seconds=shortest))
    rows: list[dict[str, Any]] = []
    for state, device in silent:
        if state.last_fix_time is None:
            continue
        for rule in rules:
            if rule.org_id != device.org_id or not rule_applies(rule, device.id):
                continue
            after = _after_s(rule)
            occurred_at = state.last_fix_time + timedelta(seconds=after)
            if occurred_at > now:
                continue
            rows.append(
                {
                    "org_id": device.org_id,
                    "device_id": device.id,
                    "rule_id": rule.id,
                    "type": AlertType.OFFLINE,
                    "occurred_at": occurred_at,
                    "lat": state.last_lat,
                    "lon": state.last_lon,
                    "details": {"after_s": after, "last_fix_time": _iso(state.last_fix_time)},
                }
            )
            state.offline_alerted_at = now
    alerts = AlertRepository(session)
    alerted = await alerts.silences_alerted(rows)
    rows = [
        row
        for row in rows
        if (row["rule_id"], row["device_id"], row["details"]["last_fix_time"]) not in alerted
    ]
    created = await alerts.insert_new(rows)
    await session.flush()
    return created


def _after_s(rule: AlertRule) -> float:
    value = rule.params.get("after_s")
    return float(value) if isinstance(value, int | float) and value > 0 else 3600.0


async def delete_expired_alerts(
    session: AsyncSession, org_id: uuid.UUID, cutoff: datetime, *, limit: int
) -> int:
    """Delete up to ``limit`` of the organization's alerts that occurred before ``cutoff``;
    how many went. Retention: no principal; repeat while it returns ``limit``."""
    return await AlertRepository(session).delete_expired(org_id, cutoff, limit=limit)


async def list_alerts(
    session: AsyncSession,
    actor: Principal,
    vehicle_id: uuid.UUID | None,
    window: paging.Window,
    page: paging.PageRequest,
    *,
    alert_type: AlertType | None = None,
    acknowledged: bool | None = None,
) -> paging.PageResult[AlertRead]:
    """A keyset page of the organization's alerts by ``occurred_at``. Raises DeviceNotFound
    for a foreign ``vehicle_id``."""
    filters = AlertFilters(vehicle_id, alert_type, acknowledged)
    return await list_org_alerts(session, actor.require_org(), filters, window, page)


async def list_org_alerts(
    session: AsyncSession,
    org_id: uuid.UUID,
    filters: AlertFilters,
    window: paging.Window,
    page: paging.PageRequest,
) -> paging.PageResult[AlertRead]:
    """``list_alerts`` of an organization named by its id (operators read any)."""
    if filters.vehicle_id is not None:
        await device_service.get_org_device(session, org_id, filters.vehicle_id)
    result = await AlertRepository(session).page_for_org(org_id, filters, window, page)
    return paging.PageResult(
        [names.read_as(AlertRead, item.row, item.vehicle_name) for item in result.items],
        result.next_cursor,
    )


async def get_alert(session: AsyncSession, actor: Principal, alert_id: uuid.UUID) -> Alert:
    """Raises AlertNotFound when missing or of another organization."""
    alert = await AlertRepository(session).get_for_org(actor.require_org(), alert_id)
    if alert is None:
        raise AlertNotFound()
    return alert


async def acknowledge_alert(
    session: AsyncSession, actor: Principal, alert_id: uuid.UUID
) -> AlertRead:
    """Record who acknowledged the alert and when; idempotent (the first acknowledgement
    stays). Raises AlertNotFound (also when the worker's recomputation dropped it
    meanwhile). Audited."""
    # Locked: of two at once, the second sees the first's acknowledgement.
    alert = await AlertRepository(session).get_for_org(
        actor.require_org(), alert_id, for_update=True
    )
    if alert is None:
        raise AlertNotFound()
    if alert.acknowledged_at is None:
        alert.acknowledged_at = datetime.now(UTC)
        alert.acknowledged_by = actor.id
        session.add(alert)
        await session.flush()
        await audit.record(
            session, actor, "alerts.acknowledge", target_type="alert", target_id=alert.id
        )
    device = await AlertRepository(session).device_of(alert)
    return names.read_as(AlertRead, alert, names.name_of(device, alert.org_id, alert.occurred_at))
