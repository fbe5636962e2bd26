"""Errors of the API keys feature."""

from __future__ import annotations

from milepost_common.errors import Conflict, LimitReached, NotFound


class ApiKeyNotFound(NotFound):
    default_message = "API key not found."


class ApiKeyRevoked(Conflict):
    default_message = "This API key is revoked; issue a new one."


class ApiKeyLimitReached(LimitReached):
    noun = "API keys in use"


class ApiKeyExpired(Conflict):
    default_message = "This API key is expired; issue a new one."
