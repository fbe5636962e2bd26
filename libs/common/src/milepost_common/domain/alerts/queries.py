"""Reads of alerts for the public API, and their acknowledgement."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain import paging
from milepost_common.domain.alerts.models import Alert, AlertType
from milepost_common.domain.alerts.schemas import AlertRead
from milepost_common.domain.audit import service as audit
from milepost_common.domain.base import get_by_id
from milepost_common.domain.devices import names
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.devices.models import Device
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
) -> paging.PageResult[AlertRead]:
    """A keyset page of the organization's alerts by ``occurred_at``. Raises DeviceNotFound
    for a foreign ``vehicle_id``."""
    return await list_org_alerts(
        session,
        actor.require_org(),
        vehicle_id,
        window,
        page,
        alert_type=alert_type,
        acknowledged=acknowledged,
    )


async def list_org_alerts(
    session: AsyncSession,
    org_id: uuid.UUID,
    vehicle_id: uuid.UUID | None,
    window: paging.Window,
    page: paging.PageRequest,
    *,
    alert_type: AlertType | None = None,
    acknowledged: bool | None = None,
) -> paging.PageResult[AlertRead]:
    """``list_alerts`` of an organization named by its id (operators read any)."""
    query = select(Alert)
    if alert_type is not None:
        query = query.where(Alert.type == alert_type)
    if acknowledged is not None:
        ack = col(Alert.acknowledged_at)
        query = query.where(ack.is_not(None) if acknowledged else ack.is_(None))
    result = await device_service.org_history_page(
        session, org_id, Alert, "occurred_at", vehicle_id, window, page, narrowed=query
    )
    return paging.PageResult(
        [names.read_as(AlertRead, item.row, item.vehicle_name) for item in result.items],
        result.next_cursor,
    )


async def get_alert(session: AsyncSession, actor: Principal, alert_id: uuid.UUID) -> Alert:
    """Raises AlertNotFound when missing or of another organization."""
    return await get_by_id(session, Alert, alert_id, AlertNotFound, org_id=actor.require_org())


async def acknowledge_alert(
    session: AsyncSession, actor: Principal, alert_id: uuid.UUID
) -> AlertRead:
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
    device = await session.get(Device, alert.device_id)
    return names.read_as(AlertRead, alert, names.name_of(device, alert.org_id, alert.occurred_at))
