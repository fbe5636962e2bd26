"""Statements on ``alerts`` (the worker's reconciliation by ``(rule_id, device_id,
occurred_at)``, the read side's pages) and on the alert rules the worker evaluates, with
the geofences they watch."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Text,
    and_,
    cast,
    delete,
    false,
    func,
    not_,
    or_,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select

from milepost_common.domain import paging
from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts.models import Alert, AlertType
from milepost_common.domain.alerts.schemas import AlertFilters
from milepost_common.domain.devices.repository import Named, TimelineRepository
from milepost_common.domain.geofences.models import Geofence
from milepost_common.domain.geofences.schemas import WatchedFence


@dataclass(frozen=True, slots=True)
class AlertScope:
    """One device's alerts of some rules in one organization's tenure (from ``since``, None:
    no bound): after ``after`` (None: all, unless ``keys_only``) up to ``until`` (None: no
    bound), or with one of ``keys`` (rule id, occurred_at); none with one of ``excluded``."""

    device_id: uuid.UUID
    org_id: uuid.UUID
    since: datetime | None
    rule_ids: Collection[uuid.UUID]
    after: datetime | None
    keys: Collection[tuple[uuid.UUID, datetime]]
    keys_only: bool = False
    until: datetime | None = None
    excluded: Collection[tuple[uuid.UUID, datetime]] = ()


class AlertRepository(TimelineRepository[Alert]):
    model = Alert
    time_field = "occurred_at"
    # An episode (overspeed, idle, a geofence dwell) whose end is still null.
    still_open = "details -> 'end_time' = 'null'::jsonb"

    async def page_for_org(
        self,
        org_id: uuid.UUID,
        filters: AlertFilters,
        window: paging.Window,
        page: paging.PageRequest,
    ) -> paging.PageResult[Named[Alert]]:
        """The organization's alerts matching ``filters`` occurring in ``window``, each with
        its vehicle's name."""
        query = select(Alert)
        if filters.alert_type is not None:
            query = query.where(Alert.type == filters.alert_type)
        if filters.acknowledged is not None:
            ack = col(Alert.acknowledged_at)
            query = query.where(ack.is_not(None) if filters.acknowledged else ack.is_(None))
        return await self.timeline_page(org_id, filters.vehicle_id, window, page, query)

    async def list_in_scopes(self, scopes: Sequence[AlertScope]) -> list[Alert]:
        """Every alert inside any of the scopes, in one query."""
        clauses: list[ColumnElement[bool]] = []
        for scope in scopes:
            if not scope.rule_ids or (scope.keys_only and not scope.keys):
                continue
            parts = [
                and_(col(Alert.rule_id) == r, col(Alert.occurred_at) == t) for r, t in scope.keys
            ]
            if not scope.keys_only:
                at = col(Alert.occurred_at)
                parts.append(
                    and_(
                        at > scope.after if scope.after is not None else true(),
                        at <= scope.until if scope.until is not None else true(),
                    )
                )
            excluded = [
                and_(col(Alert.rule_id) == r, col(Alert.occurred_at) == t)
                for r, t in scope.excluded
            ]
            clauses.append(
                and_(
                    col(Alert.device_id) == scope.device_id,
                    col(Alert.org_id) == scope.org_id,
                    col(Alert.occurred_at) >= scope.since if scope.since is not None else true(),
                    col(Alert.rule_id).in_(list(scope.rule_ids)),
                    or_(*parts),
                    not_(or_(false(), *excluded)),
                )
            )
        if not clauses:
            return []
        rows = await self.session.execute(select(Alert).where(or_(*clauses)))
        return list(rows.scalars())

    async def insert_new(self, rows: Sequence[Mapping[str, Any]]) -> list[Alert]:
        """Insert new alerts; ones that already exist (same key) are left alone and not returned."""
        if not rows:
            return []
        stmt = (
            insert(Alert)
            .values([{"id": uuid.uuid4(), **r} for r in rows])
            .on_conflict_do_nothing(constraint="uq_alerts_rule_device_time")
            .returning(Alert)
        )
        result = await self.session.execute(select(Alert).from_statement(stmt))
        return list(result.scalars())

    async def silences_alerted(
        self, rows: Sequence[Mapping[str, Any]]
    ) -> set[tuple[uuid.UUID, uuid.UUID, str]]:
        """Of these offline alerts to be, the ``(rule, device, last fix)`` silences that have
        an alert already, whatever ``after_s`` it was raised at."""
        if not rows:
            return set()
        last_fix = col(Alert.details)["last_fix_time"].astext
        found = await self.session.execute(
            select(col(Alert.rule_id), col(Alert.device_id), last_fix).where(
                col(Alert.type) == AlertType.OFFLINE,
                col(Alert.device_id).in_({row["device_id"] for row in rows}),
                last_fix.in_({row["details"]["last_fix_time"] for row in rows}),
            )
        )
        return {(rule_id, device_id, text) for rule_id, device_id, text in found.all()}

    async def open_of_device(self, device_id: uuid.UUID, org_id: uuid.UUID) -> list[Alert]:
        """The device's alerts of ``org_id`` whose episode has not ended (``still_open``)."""
        rows = await self.session.scalars(
            select(Alert).where(
                col(Alert.device_id) == device_id,
                col(Alert.org_id) == org_id,
                text(self.still_open),
            )
        )
        return list(rows.all())

    async def open_of_rule(self, rule_id: uuid.UUID) -> list[Alert]:
        """The rule's alerts whose episode has not ended (``still_open``), as stored now
        (alerts already in the session read again)."""
        rows = await self.session.scalars(
            select(Alert)
            .where(col(Alert.rule_id) == rule_id, text(self.still_open))
            .execution_options(populate_existing=True)
        )
        return list(rows.all())

    async def update(self, alert_id: uuid.UUID, values: Mapping[str, Any]) -> None:
        await self.session.execute(update(Alert).where(col(Alert.id) == alert_id).values(**values))

    async def delete_ids(self, ids: Iterable[uuid.UUID]) -> None:
        ids = list(ids)
        if ids:
            await self.session.execute(delete(Alert).where(col(Alert.id).in_(ids)))

    async def enabled_rules_with_geofences(
        self, org_ids: Collection[uuid.UUID]
    ) -> list[tuple[AlertRule, WatchedFence | None]]:
        """The organizations' enabled rules, each with the geofence its ``params`` name
        among its own organization's (None: it names none, or none of its organization's
        has that id), in one statement."""
        named = func.lower(col(AlertRule.params)["geofence_id"].astext)
        query = (
            select(
                AlertRule,
                col(Geofence.id),
                col(Geofence.radius_m),
                cast(col(Geofence.geometry), Text),
            )
            .outerjoin(
                Geofence,
                and_(
                    col(Geofence.org_id) == col(AlertRule.org_id),
                    cast(col(Geofence.id), Text) == named,
                ),
            )
            .where(col(AlertRule.org_id).in_(list(org_ids)), col(AlertRule.enabled).is_(True))
        )
        return [
            (rule, None if fence_id is None else WatchedFence(fence_id, radius_m, geometry))
            for rule, fence_id, radius_m, geometry in await self.session.execute(query)
        ]

    async def enabled_rules_of_type(self, rule_type: AlertType) -> list[AlertRule]:
        rows = await self.session.execute(
            select(AlertRule).where(
                col(AlertRule.type) == rule_type, col(AlertRule.enabled).is_(True)
            )
        )
        return list(rows.scalars())
