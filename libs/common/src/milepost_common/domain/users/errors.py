"""Errors of the users feature (organization members; ``EmailTaken`` for any account)."""

from __future__ import annotations

from milepost_common.errors import Conflict, InvalidCredentials, LimitReached, NotFound


class UserNotFound(NotFound):
    default_message = "User not found."


class EmailTaken(Conflict):
    default_message = "A user with this email already exists."


class MemberLimitReached(LimitReached):
    noun = "active members"


class LastOwner(Conflict):
    default_message = "An organization needs at least one active owner."


class WrongPassword(InvalidCredentials):
    default_message = "The current password is incorrect."
