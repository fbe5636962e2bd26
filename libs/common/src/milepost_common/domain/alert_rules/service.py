"""Alert rules of an organization; params are validated per type and stored normalized.

Ids a rule refers to (its vehicles, its geofence) must belong to the actor's organization:
a foreign id is answered like a missing one.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from milepost_common.domain import paging
from milepost_common.domain.alert_rules.schemas import (
    AlertRuleCreate,
    AlertRuleUpdate,
    GeofenceParams,
    validate_params,
)
from milepost_common.domain.alerts.models import AlertRule, AlertType
from milepost_common.domain.audit import service as audit
from milepost_common.domain.base import get_by_id
from milepost_common.domain.devices.errors import DeviceNotFound
from milepost_common.domain.devices.models import Device
from milepost_common.domain.geofences import service as geofence_service
from milepost_common.domain.principals import Principal
from milepost_common.errors import NotFound


class AlertRuleNotFound(NotFound):
    default_message = "Alert rule not found."


async def _checked_params(
    session: AsyncSession, actor: Principal, rule_type: AlertType, raw: dict[str, Any]
) -> dict[str, Any]:
    params = validate_params(rule_type, raw)
    if isinstance(params, GeofenceParams):
        await geofence_service.get_geofence(session, actor, params.geofence_id)
    return params.model_dump(mode="json")


async def _check_vehicles(
    session: AsyncSession, actor: Principal, vehicle_ids: list[uuid.UUID] | None
) -> list[uuid.UUID] | None:
    if vehicle_ids is None:
        return None
    wanted = set(vehicle_ids)
    found = await session.scalar(
        sa_select(func.count())
        .select_from(Device)
        .where(col(Device.org_id) == actor.require_org(), col(Device.id).in_(wanted))
    )
    if found != len(wanted):
        raise DeviceNotFound("One or more vehicles not found.")
    return sorted(wanted)


async def create_alert_rule(
    session: AsyncSession, actor: Principal, data: AlertRuleCreate
) -> AlertRule:
    """Raises ValidationFailed (params), DeviceNotFound or GeofenceNotFound. Audited."""
    params = await _checked_params(session, actor, data.type, data.params)
    vehicle_ids = await _check_vehicles(session, actor, data.vehicle_ids)
    rule = AlertRule(
        org_id=actor.require_org(),
        name=data.name,
        type=data.type,
        params=params,
        vehicle_ids=vehicle_ids,
        enabled=data.enabled,
    )
    session.add(rule)
    await session.flush()
    await audit.record(
        session,
        actor,
        "alert_rules.create",
        target_type="alert_rule",
        target_id=rule.id,
        diff={"name": rule.name, "type": rule.type.value, "params": params},
    )
    return rule


async def get_alert_rule(session: AsyncSession, actor: Principal, rule_id: uuid.UUID) -> AlertRule:
    """Raises AlertRuleNotFound when missing or of another organization."""
    return await get_by_id(
        session, AlertRule, rule_id, AlertRuleNotFound, org_id=actor.require_org()
    )


async def list_alert_rules(
    session: AsyncSession, actor: Principal, page: paging.PageRequest
) -> paging.PageResult[AlertRule]:
    return await paging.org_page(session, AlertRule, actor.require_org(), page)


async def update_alert_rule(
    session: AsyncSession, actor: Principal, rule_id: uuid.UUID, data: AlertRuleUpdate
) -> AlertRule:
    """Change the fields sent (``vehicle_ids: null`` means all vehicles). Raises
    AlertRuleNotFound, ValidationFailed, DeviceNotFound or GeofenceNotFound. Audited."""
    rule = await get_alert_rule(session, actor, rule_id)
    sent = data.model_dump(exclude_unset=True)
    changes: dict[str, Any] = {}
    if sent.get("name") is not None:
        changes["name"] = sent["name"]
    if sent.get("enabled") is not None:
        changes["enabled"] = sent["enabled"]
    if data.params is not None:
        changes["params"] = await _checked_params(session, actor, AlertType(rule.type), data.params)
    if "vehicle_ids" in sent:
        changes["vehicle_ids"] = await _check_vehicles(session, actor, data.vehicle_ids)
    diff = audit.changes({k: getattr(rule, k) for k in changes}, changes)
    if diff:
        for name, value in changes.items():
            setattr(rule, name, value)
        rule.updated_at = datetime.now(UTC)
        session.add(rule)
        await session.flush()
        await audit.record(
            session,
            actor,
            "alert_rules.update",
            target_type="alert_rule",
            target_id=rule.id,
            diff={k: [str(x) if isinstance(x, list) else x for x in v] for k, v in diff.items()},
        )
    return rule


async def delete_alert_rule(session: AsyncSession, actor: Principal, rule_id: uuid.UUID) -> None:
    """Deletes the rule and, with it, its alerts. Raises AlertRuleNotFound. Audited."""
    rule = await get_alert_rule(session, actor, rule_id)
    await session.delete(rule)
    await session.flush()
    await audit.record(
        session,
        actor,
        "alert_rules.delete",
        target_type="alert_rule",
        target_id=rule_id,
        diff={"name": rule.name, "type": str(rule.type)},
    )
