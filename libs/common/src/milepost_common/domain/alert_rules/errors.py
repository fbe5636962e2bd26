"""Errors of the alert rules feature."""

from __future__ import annotations

from collections.abc import Sequence

from milepost_common.domain.devices.models import Device
from milepost_common.errors import LimitReached, NotFound, ValidationFailed

# Vehicles an answer names one by one (the message names fewer).
_NAMED_MAX = 100
_MESSAGE_NAMES = 5


class AlertRuleNotFound(NotFound):
    default_message = "Alert rule not found."


class AlertRuleLimitReached(LimitReached):
    noun = "alert rules"


class RuleVehiclesLimitReached(LimitReached):
    """The organization's rules would name more vehicles than it may in all."""

    noun = "vehicles named by rules"

    @classmethod
    def over(cls, limit: int, total: int) -> RuleVehiclesLimitReached:
        return cls(
            f"The organization's alert rules may name {limit:,} vehicles in all; with this"
            f" rule they would name {total:,}. A rule for every vehicle takes"
            " `vehicle_ids: null` and names none."
        )


class OverspeedLimitMissing(ValidationFailed):
    """An overspeed rule without ``limit_kmh`` covering vehicles that have no speed limit
    while the organization has no default: it would never fire for them."""

    @classmethod
    def for_vehicles(cls, vehicles: Sequence[Device]) -> OverspeedLimitMissing:
        shown = ", ".join(f"{v.name} ({v.id})" for v in vehicles[:_MESSAGE_NAMES])
        more = len(vehicles) - _MESSAGE_NAMES
        return cls(
            f"This overspeed rule would never fire for {len(vehicles)} vehicle(s) with no"
            f" speed limit: {shown}{f' and {more} more' if more > 0 else ''}. Set"
            " `params.limit_kmh`, give the vehicles a `speed_limit_kmh`, or set the"
            " organization's default speed limit.",
            details=[
                {
                    "loc": ["body", "params", "limit_kmh"],
                    "msg": f"Vehicle {v.name!r} ({v.id}) has no speed limit and the"
                    " organization no default.",
                    "type": "missing",
                }
                for v in vehicles[:_NAMED_MAX]
            ],
        )
