"""Errors of the organizations feature."""

from __future__ import annotations

from milepost_common.errors import BadRequest, Conflict, NotFound


class OrganizationNotFound(NotFound):
    default_message = "Organization not found."


class OrganizationNotSuspended(Conflict):
    default_message = "Only a suspended organization can be deleted."


class OrganizationSuspended(Conflict):
    default_message = "This organization is suspended."


class DeletionNotConfirmed(BadRequest):
    default_message = "The confirmation does not match the organization's name."


class DevicesHoldOtherHistory(Conflict):
    default_message = (
        "Devices of this organization were transferred in and still hold another "
        "organization's history, which deleting them would erase: transfer them out first."
    )
