"""Errors of the users feature."""

from __future__ import annotations

from milepost_common.errors import Conflict, InvalidCredentials, NotFound, Unauthorized


class UserNotFound(NotFound):
    default_message = "User not found."


class OperatorNotFound(NotFound):
    default_message = "Operator not found."


class EmailTaken(Conflict):
    default_message = "A user with this email already exists."


class LastOwner(Conflict):
    default_message = "An organization needs at least one active owner."


class OwnAccount(Conflict):
    default_message = "Operators cannot change their own role or deactivate themselves."


class WrongPassword(InvalidCredentials):
    default_message = "The current password is incorrect."


class SsoLoginRefused(Unauthorized):
    """The message says why, for the console's login page and the audit log."""

    default_message = "Single sign-on was refused."
