"""Rule specs: an organization's alert rules as the engine evaluates them for one device.

No I/O: the handler reads the devices with their organizations and the rules with the
geofences they watch; this decides which rules apply to a device (its organization's
fix-derived ones that name it, or every vehicle), which speed limit stands in for a rule
without its own (the device's, else the organization's default), and which shape each
geofence rule watches.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence

from milepost_common.domain.alerts import service as alert_service
from milepost_common.domain.alerts.service import EnabledRule
from milepost_common.domain.devices.models import Device
from milepost_common.domain.organizations.models import Organization
from milepost_common.logging import get_logger
from milepost_worker import geo
from milepost_worker.rules.engine import FIX_RULE_TYPES, RuleSpec

log = get_logger("milepost.worker.batches")


def shapes_of(rules: Iterable[EnabledRule]) -> dict[uuid.UUID, geo.Shape]:
    """The shape of each readable geofence the rules watch, parsed once; an unreadable one
    is logged and left out (its rules then watch nothing)."""
    shapes: dict[uuid.UUID, geo.Shape] = {}
    for fence in {r.geofence.id: r.geofence for r in rules if r.geofence is not None}.values():
        try:
            shapes[fence.id] = geo.parse_shape(fence.geometry, fence.radius_m)
        except (ValueError, TypeError, IndexError):
            log.warning("geofence_unreadable", geofence_id=str(fence.id))
    return shapes


def rule_specs(
    rules: Sequence[EnabledRule],
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
    for rule, fence in rules:
        if (
            rule.org_id != device.org_id
            or rule.type not in FIX_RULE_TYPES
            or not alert_service.rule_applies(rule, device.id)
        ):
            continue
        shape = shapes.get(fence.id) if fence is not None else None
        specs.append(RuleSpec(str(rule.id), str(rule.type), rule.params, limit, shape))
    return specs
