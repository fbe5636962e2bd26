"""Alert rules: what the worker checks every fix against."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, status

from milepost_api.deps import AUTHENTICATED, ContextDep, CurrentUser, ManagerUser, page_params
from milepost_api.http_cache import REVALIDATE, cache_control
from milepost_common.domain import paging
from milepost_common.domain.alert_rules import service as rule_service
from milepost_common.domain.alert_rules.errors import (
    AlertRuleLimitReached,
    AlertRuleNotFound,
    RuleVehiclesLimitReached,
)
from milepost_common.domain.alert_rules.schemas import (
    AlertRuleCreate,
    AlertRuleRead,
    AlertRuleUpdate,
)
from milepost_common.domain.devices.errors import DeviceNotFound
from milepost_common.domain.geofences.errors import GeofenceNotFound
from milepost_common.errors import Forbidden, Unauthorized, ValidationFailed
from milepost_common.pagination import Page
from milepost_common.web.deps import SessionDep
from milepost_common.web.errors import error_responses

router = APIRouter(prefix="/v1/alert-rules", tags=["alert rules"], responses=AUTHENTICATED)

RulesPage = Annotated[
    paging.PageRequest, Depends(page_params(("created_at", "name"), "created_at"))
]
RuleNotFound = AlertRuleNotFound


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create an alert rule",
    responses=error_responses(
        Unauthorized,
        Forbidden,
        DeviceNotFound,
        GeofenceNotFound,
        AlertRuleLimitReached,
        RuleVehiclesLimitReached,
        ValidationFailed,
    ),
)
async def create_alert_rule(
    user: ManagerUser, body: AlertRuleCreate, session: SessionDep, ctx: ContextDep
) -> AlertRuleRead:
    """Managers and owners. `params` are checked against `type` and stored with their
    defaults; `vehicle_ids: null` applies the rule to every vehicle.

    An overspeed rule without `limit_kmh` takes each vehicle's `speed_limit_kmh`, then the
    organization's default: it is refused (422, the vehicles named) while a covered vehicle
    has neither. The rule applies to fixes from now on (`applies_from`): positions already
    stored are not checked against it.

    An organization has at most 1,000 rules by default, and its rules name at most 100,000
    vehicles in all (`vehicle_ids`; server settings): past either, 409."""
    rule = await rule_service.create_alert_rule(
        session,
        user,
        body,
        limit=ctx.settings.api.max_alert_rules_per_org,
        max_listed=ctx.settings.api.max_rule_vehicles_per_org,
    )
    (answer,) = await rule_service.read_alert_rules(session, user, [rule])
    return answer


@router.get(
    "", summary="List alert rules", responses=error_responses(Unauthorized, ValidationFailed)
)
@cache_control(REVALIDATE)
async def list_alert_rules(
    user: CurrentUser, session: SessionDep, page: RulesPage
) -> Page[AlertRuleRead]:
    """Ascending by `created_at` (or `sort=name`). Each rule lists the covered vehicles it
    cannot fire for now in `inactive_vehicle_ids`."""
    result = await rule_service.list_alert_rules(session, user, page)
    return Page(
        items=await rule_service.read_alert_rules(session, user, result.items),
        next_cursor=result.next_cursor,
    )


@router.get(
    "/{rule_id}",
    summary="Get an alert rule",
    responses=error_responses(Unauthorized, RuleNotFound, ValidationFailed),
)
@cache_control(REVALIDATE)
async def get_alert_rule(
    user: CurrentUser, rule_id: uuid.UUID, session: SessionDep
) -> AlertRuleRead:
    """With its params as stored (defaults filled in) and the covered vehicles it cannot
    fire for now (`inactive_vehicle_ids`: a vehicle whose speed limit was removed, for an
    overspeed rule without `limit_kmh`)."""
    rule = await rule_service.get_alert_rule(session, user, rule_id)
    (answer,) = await rule_service.read_alert_rules(session, user, [rule])
    return answer


@router.patch(
    "/{rule_id}",
    summary="Update an alert rule",
    responses=error_responses(
        Unauthorized,
        Forbidden,
        RuleNotFound,
        DeviceNotFound,
        GeofenceNotFound,
        RuleVehiclesLimitReached,
        ValidationFailed,
    ),
)
async def update_alert_rule(
    user: ManagerUser,
    rule_id: uuid.UUID,
    body: AlertRuleUpdate,
    session: SessionDep,
    ctx: ContextDep,
) -> AlertRuleRead:
    """Managers and owners. Only the fields sent change (`params` are replaced whole); the
    type is fixed. New `params` or `vehicle_ids` of an overspeed rule are checked as at
    creation (422 naming the vehicles left without a limit). A vehicle the rule stops
    applying to (`enabled: false`, taken off `vehicle_ids`, a geofence rule's other
    `geofence_id`) has its open alert ended at its last fix, with `alert.ended`. New
    `vehicle_ids` that would take the vehicles the organization's rules name past the limit
    (100,000 by default) answer 409."""
    rule = await rule_service.update_alert_rule(
        session, user, rule_id, body, max_listed=ctx.settings.api.max_rule_vehicles_per_org
    )
    (answer,) = await rule_service.read_alert_rules(session, user, [rule])
    return answer


@router.delete(
    "/{rule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an alert rule",
    responses=error_responses(Unauthorized, Forbidden, RuleNotFound, ValidationFailed),
)
async def delete_alert_rule(user: ManagerUser, rule_id: uuid.UUID, session: SessionDep) -> None:
    """Managers and owners. The rule's alerts go with it; receivers get `alert.ended` for
    the ones still open."""
    await rule_service.delete_alert_rule(session, user, rule_id)
