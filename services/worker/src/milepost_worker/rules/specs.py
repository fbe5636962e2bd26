"""Rule specs: an organization's alert rules as the engine evaluates them for one device.

No I/O: the handler reads the rules, the devices, their organizations and the geofences the
rules name; this decides which rules apply to a device (its organization's fix-derived ones
that name it, or every vehicle), which speed limit stands in for a rule without its own (the
device's, else the organization's default), and which shape each geofence rule watches.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence

from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts import service as alert_service
from milepost_common.domain.devices.models import Device
from milepost_common.domain.geofences.models import Geofence
from milepost_common.domain.organizations.models import Organization
from milepost_common.logging import get_logger
from milepost_worker import geo
from milepost_worker.rules.engine import FIX_RULE_TYPES, RuleSpec

log = get_logger("milepost.worker.batches")


def _geofence_id(rule: AlertRule) -> uuid.UUID | None:
    raw = rule.params.get("geofence_id")
    if raw is None:
        return None
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return None


def geofence_ids(rules: Iterable[AlertRule]) -> set[uuid.UUID]:
    """The geofences the rules name (an unreadable id names none)."""
    return {fence for rule in rules if (fence := _geofence_id(rule)) is not None}


def shapes_of(fences: Iterable[Geofence]) -> dict[uuid.UUID, geo.Shape]:
    """Each readable geofence's shape; an unreadable one is logged and left out (its rules
    then watch nothing)."""
    shapes: dict[uuid.UUID, geo.Shape] = {}
    for fence in fences:
        try:
            shapes[fence.id] = geo.parse_shape(fence.geometry, fence.radius_m)
        except (ValueError, TypeError, IndexError):
            log.warning("geofence_unreadable", geofence_id=str(fence.id))
    return shapes


def rule_specs(
    rules: Sequence[AlertRule],
    device: Device,
    org: Organization,
    shapes: Mapping[uuid.UUID, geo.Shape],
) -> list[RuleSpec]:
    """The device's organization's enabled fix-derived rules that apply to it, in order."""
    limit = (
        device.speed_limit_kmh
        if device.speed_limit_kmh is not None
        else org.default_speed_limit_kmh
    )
    specs = []
    for rule in rules:
        if (
            rule.org_id != device.org_id
            or rule.type not in FIX_RULE_TYPES
            or not alert_service.rule_applies(rule, device.id)
        ):
            continue
        shape = None
        if "geofence_id" in rule.params:
            fence = _geofence_id(rule)
            shape = shapes.get(fence) if fence is not None else None
        specs.append(RuleSpec(str(rule.id), str(rule.type), rule.params, limit, shape))
    return specs
