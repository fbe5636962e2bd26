"""Errors of the geofences feature."""

from __future__ import annotations

from milepost_common.errors import Conflict, NotFound


class GeofenceNotFound(NotFound):
    default_message = "Geofence not found."


class GeofenceInUse(Conflict):
    default_message = "Alert rules still use this geofence; change or delete them first."
