"""Errors of the devices feature (the public API calls devices vehicles)."""

from __future__ import annotations

from milepost_common.errors import BadRequest, Conflict, NotFound


class DeviceNotFound(NotFound):
    default_message = "Vehicle not found."


class DeviceUniqueIdTaken(Conflict):
    default_message = "A vehicle with this unique_id already exists."


class DeviceLimitReached(Conflict):
    default_message = "The organization's plan allows no more vehicles."


class DeviceDeletionNotConfirmed(BadRequest):
    default_message = "The confirmation does not match the device's unique_id."


class DeviceHoldsOtherHistory(Conflict):
    default_message = (
        "This device was transferred and still holds another organization's history, which "
        "deleting it would erase."
    )
