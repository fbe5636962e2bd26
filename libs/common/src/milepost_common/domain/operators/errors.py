"""Errors of the operators feature (their accounts and single sign-on)."""

from __future__ import annotations

from milepost_common.errors import Conflict, NotFound, Unauthorized


class OperatorNotFound(NotFound):
    default_message = "Operator not found."


class OwnAccount(Conflict):
    default_message = "Operators cannot change their own role or deactivate themselves."


class SsoLoginRefused(Unauthorized):
    """The message says why, for the console's login page and the audit log."""

    default_message = "Single sign-on was refused."
