"""Errors of the trips feature (trips and stops)."""

from __future__ import annotations

from milepost_common.errors import NotFound


class TripNotFound(NotFound):
    default_message = "Trip not found."
