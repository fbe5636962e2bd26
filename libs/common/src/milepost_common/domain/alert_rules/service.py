"""Alert rules of an organization; params are validated per type and stored normalized.

Ids a rule refers to (its vehicles, its geofence) must belong to the actor's organization:
a foreign id is answered like a missing one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain import paging
from milepost_common.domain.alert_rules.errors import (
    AlertRuleLimitReached,
    AlertRuleNotFound,
    OverspeedLimitMissing,
    RuleVehiclesLimitReached,
)
from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alert_rules.repository import AlertRuleRepository
from milepost_common.domain.alert_rules.schemas import (
    AlertRuleCreate,
    AlertRuleRead,
    AlertRuleUpdate,
    GeofenceParams,
    validate_params,
)
from milepost_common.domain.alerts import service as alert_service
from milepost_common.domain.alerts.models import AlertType
from milepost_common.domain.audit import service as audit
from milepost_common.domain.base import count_for_org_locked, lock_org_for_limit
from milepost_common.domain.devices.errors import DeviceNotFound
from milepost_common.domain.geofences import service as geofence_service
from milepost_common.domain.principals import Principal
from milepost_common.domain.webhooks import delivery as webhook_delivery


async def _check_overspeed(
    session: AsyncSession,
    org_id: uuid.UUID,
    params: dict[str, Any],
    vehicle_ids: list[uuid.UUID] | None,
) -> None:
    """Raises OverspeedLimitMissing when a covered vehicle has no limit to fall back on."""
    rules = AlertRuleRepository(session)
    if params.get("limit_kmh") is not None or await rules.default_speed_limit(org_id) is not None:
        return
    unlimited = await rules.devices_without_limit(org_id, vehicle_ids)
    if unlimited:
        raise OverspeedLimitMissing.for_vehicles(unlimited)


async def read_alert_rules(
    session: AsyncSession, actor: Principal, rules: Sequence[AlertRule]
) -> list[AlertRuleRead]:
    """The rules as answers show them, each with the covered vehicles it cannot fire for now
    (``inactive_vehicle_ids``); at most three queries whatever the number of rules."""
    org_id = actor.require_org()
    repository = AlertRuleRepository(session)
    unlimited: set[uuid.UUID] = set()
    if (
        any(_falls_back(rule) for rule in rules)
        and await repository.default_speed_limit(org_id) is None
    ):
        unlimited = await repository.device_ids_without_limit(org_id)
    listed = {v for rule in rules for v in rule.vehicle_ids or ()}
    held: set[uuid.UUID] = set()
    if listed:
        held = await repository.held_device_ids(org_id, listed)
    answers = []
    for rule in rules:
        inactive = set(rule.vehicle_ids or ()) - held
        if _falls_back(rule):
            covered = unlimited if rule.vehicle_ids is None else unlimited & set(rule.vehicle_ids)
            inactive |= covered
        answers.append(
            AlertRuleRead.model_validate(rule).model_copy(
                update={"inactive_vehicle_ids": sorted(inactive)}
            )
        )
    return answers


def _falls_back(rule: AlertRule) -> bool:
    """An overspeed rule that takes each vehicle's limit (no ``limit_kmh`` of its own)."""
    return rule.type == AlertType.OVERSPEED and rule.params.get("limit_kmh") is None


async def _checked_params(
    session: AsyncSession, actor: Principal, rule_type: AlertType, raw: dict[str, Any]
) -> dict[str, Any]:
    params = validate_params(rule_type, raw)
    if isinstance(params, GeofenceParams):
        # Held until the rule is stored: a delete of the geofence waits, then sees the rule.
        await geofence_service.get_geofence(session, actor, params.geofence_id, for_share=True)
    return params.model_dump(mode="json")


async def _check_vehicles(
    session: AsyncSession, actor: Principal, vehicle_ids: list[uuid.UUID] | None
) -> list[uuid.UUID] | None:
    if vehicle_ids is None:
        return None
    wanted = set(vehicle_ids)
    held = await AlertRuleRepository(session).held_devices(actor.require_org(), wanted)
    if held != wanted:
        # Named, so that a rule read back (a vehicle deleted since) can be sent again without.
        raise DeviceNotFound(
            "One or more vehicles not found.",
            details=[
                {
                    "loc": ["body", "vehicle_ids", index],
                    "msg": f"Vehicle {vehicle_id} not found.",
                    "type": "not_found",
                }
                for index, vehicle_id in enumerate(vehicle_ids)
                if vehicle_id not in held
            ],
        )
    return sorted(wanted)


async def _check_listed(
    session: AsyncSession,
    org_id: uuid.UUID,
    vehicle_ids: list[uuid.UUID] | None,
    limit: int | None,
    besides: uuid.UUID | None = None,
) -> None:
    """Raises RuleVehiclesLimitReached when ``vehicle_ids`` (in place of the rule
    ``besides``'s) would take the vehicles the organization's rules name past ``limit``:
    the workers read every enabled rule's list for each batch of the organization's
    (100 rules of 10,000 vehicles: 0.8 s a batch). Counted with the organization locked."""
    if limit is None or vehicle_ids is None:
        return
    await lock_org_for_limit(session, org_id)
    named = await AlertRuleRepository(session).listed_vehicles_for_org(org_id, besides=besides)
    if named + len(vehicle_ids) > limit:
        raise RuleVehiclesLimitReached.over(limit, named + len(vehicle_ids))


async def create_alert_rule(
    session: AsyncSession,
    actor: Principal,
    data: AlertRuleCreate,
    *,
    limit: int,
    max_listed: int | None = None,
) -> AlertRule:
    """Raises ValidationFailed (params), OverspeedLimitMissing, DeviceNotFound,
    GeofenceNotFound, or AlertRuleLimitReached when the organization already has ``limit``
    rules (every rule is checked against every fix of the vehicles it covers) or
    RuleVehiclesLimitReached past ``max_listed`` vehicles named in all; the rule's
    own errors come first, and the count last, just before the insert, so the organization
    stays locked for as short a time as possible. Audited."""
    params = await _checked_params(session, actor, data.type, data.params)
    vehicle_ids = await _check_vehicles(session, actor, data.vehicle_ids)
    if data.type == AlertType.OVERSPEED:
        await _check_overspeed(session, actor.require_org(), params, vehicle_ids)
    if await count_for_org_locked(session, AlertRule, actor.require_org()) >= limit:
        raise AlertRuleLimitReached.at(limit)
    await _check_listed(session, actor.require_org(), vehicle_ids, max_listed)
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
    rule = await AlertRuleRepository(session).get_for_org(actor.require_org(), rule_id)
    if rule is None:
        raise AlertRuleNotFound()
    return rule


async def list_alert_rules(
    session: AsyncSession, actor: Principal, page: paging.PageRequest
) -> paging.PageResult[AlertRule]:
    return await AlertRuleRepository(session).page_for_org(actor.require_org(), page)


async def update_alert_rule(
    session: AsyncSession,
    actor: Principal,
    rule_id: uuid.UUID,
    data: AlertRuleUpdate,
    *,
    max_listed: int | None = None,
) -> AlertRule:
    """Change the fields sent (``vehicle_ids: null`` means all vehicles). Raises
    AlertRuleNotFound, ValidationFailed, OverspeedLimitMissing (when new params or vehicles
    leave a covered vehicle without a limit), DeviceNotFound, GeofenceNotFound, or
    RuleVehiclesLimitReached (new vehicles past ``max_listed`` named in all). Audited."""
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
    if rule.type == AlertType.OVERSPEED and ("params" in changes or "vehicle_ids" in changes):
        await _check_overspeed(
            session,
            rule.org_id,
            changes.get("params", rule.params),
            changes.get("vehicle_ids", rule.vehicle_ids),
        )
    if "vehicle_ids" in changes:
        await _check_listed(
            session, rule.org_id, changes["vehicle_ids"], max_listed, besides=rule.id
        )
    diff = audit.changes({k: getattr(rule, k) for k in changes}, changes)
    if diff:
        watched = _watched_fence(rule)
        for name, value in changes.items():
            setattr(rule, name, value)
        rule.updated_at = datetime.now(UTC)
        session.add(rule)
        await session.flush()
        same_watch = _watched_fence(rule) == watched
        # Only these change where the rule applies (a new name, or a new limit, does not).
        if diff.keys() & {"enabled", "vehicle_ids"} or not same_watch:
            await _end_uncovered_episodes(
                session,
                rule,
                lambda device_id: (
                    rule.enabled and same_watch and alert_service.rule_applies(rule, device_id)
                ),
            )
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
    """Deletes the rule and, with it, its alerts; receivers get ``alert.ended`` for the ones
    still open. Raises AlertRuleNotFound. Audited."""
    rule = await get_alert_rule(session, actor, rule_id)
    await _end_uncovered_episodes(session, rule, lambda _device_id: False)
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


async def _end_uncovered_episodes(
    session: AsyncSession, rule: AlertRule, covers: Callable[[uuid.UUID], bool]
) -> None:
    """End the rule's open episodes where it stops applying (``alert_service.end_rule_episodes``)
    and queue their ``alert.ended`` (the webhook sweep sends them)."""
    events = await alert_service.end_rule_episodes(session, rule, covers)
    await webhook_delivery.create_deliveries(session, events, datetime.now(UTC))


def _watched_fence(rule: AlertRule) -> Any:
    """The geofence a geofence rule watches (None for the other types), as the worker's
    engine reads it (``rules.engine._watched``): a rule pointed at another fence starts
    afresh there, so its open dwell ends here."""
    if rule.type in (AlertType.GEOFENCE_ENTER, AlertType.GEOFENCE_EXIT):
        return rule.params.get("geofence_id")
    return None
