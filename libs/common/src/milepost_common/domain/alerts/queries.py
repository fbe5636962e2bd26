"""Reads of alerts for the public API, and their acknowledgement."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain import paging
from milepost_common.domain.alerts.models import Alert, AlertType
from milepost_common.domain.audit import service as audit
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.principals import Principal
from milepost_common.errors import NotFound

SORTABLE = ("occurred_at",)


class AlertNotFound(NotFound):
    default_message = "Alert not found."


async def list_alerts(
    session: AsyncSession,
    actor: Principal,
    vehicle_id: uuid.UUID | None,
    window: paging.Window,
    page: paging.PageRequest,
    *,
    alert_type: AlertType | None = None,
    acknowledged: bool | None = None,
) -> paging.PageResult[Alert]:
    """A keyset page of the organization's alerts by ``occurred_at``. Raises DeviceNotFound
    for a foreign ``vehicle_id``."""
    query = select(Alert).where(Alert.org_id == actor.require_org())
    if vehicle_id is not None:
        await device_service.get_device(session, actor, vehicle_id)
        query = query.where(Alert.device_id == vehicle_id)
    if alert_type is not None:
        query = query.where(Alert.type == alert_type)
    if acknowledged is not None:
        ack = col(Alert.acknowledged_at)
        query = query.where(ack.is_not(None) if acknowledged else ack.is_(None))
    query = paging.time_window(query, col(Alert.occurred_at), window)
    descending = page.sort is not None and page.sort.descending
    query = paging.keyset(
        query,
        col(Alert.occurred_at),
        col(Alert.id),
        limit=page.limit,
        cursor=page.cursor,
        descending=descending,
    )
    rows = list((await session.scalars(query)).all())
    return paging.page_of(rows, page.limit, lambda a: (a.occurred_at, a.id))


async def get_alert(session: AsyncSession, actor: Principal, alert_id: uuid.UUID) -> Alert:
    """Raises AlertNotFound when missing or of another organization."""
    query = select(Alert).where(Alert.id == alert_id, Alert.org_id == actor.require_org())
    alert = (await session.scalars(query)).first()
    if alert is None:
        raise AlertNotFound()
    return alert


async def acknowledge_alert(session: AsyncSession, actor: Principal, alert_id: uuid.UUID) -> Alert:
    """Record who acknowledged the alert and when; idempotent (the first acknowledgement
    stays). Raises AlertNotFound. Audited."""
    alert = await get_alert(session, actor, alert_id)
    if alert.acknowledged_at is None:
        alert.acknowledged_at = datetime.now(UTC)
        alert.acknowledged_by = actor.id
        session.add(alert)
        await session.flush()
        await audit.record(
            session, actor, "alerts.acknowledge", target_type="alert", target_id=alert.id
        )
    return alert
