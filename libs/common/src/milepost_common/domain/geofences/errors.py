"""Errors of the geofences feature."""

from __future__ import annotations

from milepost_common.errors import Conflict, LimitReached, NotFound


class GeofenceNotFound(NotFound):
    default_message = "Geofence not found."


class GeofenceInUse(Conflict):
    default_message = "Alert rules still use this geofence; change or delete them first."


class GeofenceVerticesLimitReached(LimitReached):
    """The organization's geofences would hold more vertices than it may have in all."""

    noun = "geofence vertices"

    @classmethod
    def over(cls, limit: int, total: int) -> GeofenceVerticesLimitReached:
        return cls(
            f"The organization's geofences may hold {limit:,} vertices in all; with this"
            f" geometry they would hold {total:,}. Simplify it, or delete geofences no rule"
            " needs."
        )
