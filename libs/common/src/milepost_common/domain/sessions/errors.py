from __future__ import annotations

from milepost_common.errors import BadRequest, InvalidCredentials, Unauthorized


class LoginFailed(InvalidCredentials):
    """Wrong email or password, or an account that may not log in here. The failure's
    audit entry must survive the 401, so the transaction commits."""

    commits = True


class RefreshTokenInvalid(Unauthorized):
    default_message = "Invalid or expired refresh token."


class RefreshTokenReused(RefreshTokenInvalid):
    """A rotated token was presented again: its whole family is revoked (and that sticks)."""

    commits = True


class OneTimeTokenInvalid(BadRequest):
    default_message = "This link is invalid, expired or already used."
