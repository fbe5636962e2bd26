"""Writing alerts as the worker derives them; reconciled by ``(rule_id, device_id, occurred_at)``.

A recomputation updates an alert in place (its ``id`` and acknowledgement survive) and
removes the ones that no longer happen. Reading, acknowledging and rule management live in
the api's functions (``queries.py``, ``domain/alert_rules``).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, or_, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain.alerts.models import Alert, AlertRule, AlertType
from milepost_common.domain.devices import state as device_state


def alert_data(alert: Alert) -> dict[str, Any]:
    """The public alert shape (DESIGN.md), JSON-ready."""
    return {
        "id": str(alert.id),
        "vehicle_id": str(alert.device_id),
        "rule_id": str(alert.rule_id),
        "type": str(alert.type),
        "occurred_at": _iso(alert.occurred_at),
        "lat": alert.lat,
        "lon": alert.lon,
        "details": alert.details,
        "acknowledged_at": _iso(alert.acknowledged_at) if alert.acknowledged_at else None,
        "acknowledged_by": str(alert.acknowledged_by) if alert.acknowledged_by else None,
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def list_enabled_rules(
    session: AsyncSession, org_ids: Collection[uuid.UUID]
) -> list[AlertRule]:
    rows = await session.execute(
        select(AlertRule).where(
            col(AlertRule.org_id).in_(list(org_ids)), col(AlertRule.enabled).is_(True)
        )
    )
    return list(rows.scalars())


def rule_applies(rule: AlertRule, device_id: uuid.UUID) -> bool:
    return rule.vehicle_ids is None or device_id in rule.vehicle_ids


@dataclass(frozen=True, slots=True)
class AlertScope:
    """One device's alerts of some rules in one organization's tenure (from ``since``, None:
    no bound): after ``after`` (None: all, unless ``keys_only``) or with one of ``keys``
    (rule id, occurred_at)."""

    device_id: uuid.UUID
    org_id: uuid.UUID
    since: datetime | None
    rule_ids: Collection[uuid.UUID]
    after: datetime | None
    keys: Collection[tuple[uuid.UUID, datetime]]
    keys_only: bool = False


async def list_alerts_in_scopes(session: AsyncSession, scopes: Sequence[AlertScope]) -> list[Alert]:
    """Every alert inside any of the scopes, in one query."""
    clauses: list[ColumnElement[bool]] = []
    for scope in scopes:
        if not scope.rule_ids or (scope.keys_only and not scope.keys):
            continue
        parts = [and_(col(Alert.rule_id) == r, col(Alert.occurred_at) == t) for r, t in scope.keys]
        if not scope.keys_only:
            parts.append(
                col(Alert.occurred_at) > scope.after if scope.after is not None else true()
            )
        clauses.append(
            and_(
                col(Alert.device_id) == scope.device_id,
                col(Alert.org_id) == scope.org_id,
                col(Alert.occurred_at) >= scope.since if scope.since is not None else true(),
                col(Alert.rule_id).in_(list(scope.rule_ids)),
                or_(*parts),
            )
        )
    if not clauses:
        return []
    rows = await session.execute(select(Alert).where(or_(*clauses)))
    return list(rows.scalars())


async def insert_alerts(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> list[Alert]:
    """Insert new alerts; ones that already exist (same key) are left alone and not returned."""
    if not rows:
        return []
    stmt = (
        insert(Alert)
        .values([{"id": uuid.uuid4(), **r} for r in rows])
        .on_conflict_do_nothing(constraint="uq_alerts_rule_device_time")
        .returning(Alert)
    )
    result = await session.execute(select(Alert).from_statement(stmt))
    return list(result.scalars())


async def update_alert(
    session: AsyncSession, alert_id: uuid.UUID, values: Mapping[str, Any]
) -> None:
    await session.execute(update(Alert).where(col(Alert.id) == alert_id).values(**values))


async def delete_alerts(session: AsyncSession, ids: Iterable[uuid.UUID]) -> None:
    ids = list(ids)
    if ids:
        await session.execute(delete(Alert).where(col(Alert.id).in_(ids)))


async def record_offline_alerts(session: AsyncSession, now: datetime) -> list[Alert]:
    """Offline alerts for devices silent longer than each offline rule's ``after_s``.

    Idempotent: ``occurred_at`` is the last fix plus ``after_s``, so a second run (or a second
    beat) finds the alert already there and creates nothing.
    """
    rules = list(
        (
            await session.execute(
                select(AlertRule).where(
                    col(AlertRule.type) == AlertType.OFFLINE, col(AlertRule.enabled).is_(True)
                )
            )
        ).scalars()
    )
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
    created = await insert_alerts(session, rows)
    await session.flush()
    return created


def _after_s(rule: AlertRule) -> float:
    value = rule.params.get("after_s")
    return float(value) if isinstance(value, int | float) and value > 0 else 3600.0
