"""Errors of the alerts feature."""

from __future__ import annotations

from milepost_common.errors import NotFound


class AlertNotFound(NotFound):
    default_message = "Alert not found."
