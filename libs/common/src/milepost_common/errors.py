"""The error hierarchy every app and the worker share.

Domain code raises :class:`AppError` subclasses; ``web/errors.py`` renders them in the
envelope of DESIGN.md. Each class carries the HTTP status and the code clients see.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self


class AppError(Exception):
    """An error a client may see: status, stable code, a human message, optional details."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "Internal server error."
    # True for errors whose transaction must still commit (a failed login's audit entry,
    # the revocation that answers a refresh-token reuse).
    commits: ClassVar[bool] = False
    headers: dict[str, str]

    def __init__(
        self,
        message: str | None = None,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details or []
        self.headers = headers or {}
        super().__init__(self.message)


class BadRequest(AppError):
    status_code = 400
    code = "bad_request"
    default_message = "Bad request."


class MalformedBody(BadRequest):
    code = "malformed_body"
    default_message = "The request body could not be parsed."


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"
    default_message = "Authentication required."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("WWW-Authenticate", "Bearer")


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    default_message = "Incorrect email or password."


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"
    default_message = "You are not allowed to do this."


class NotFound(AppError):
    status_code = 404
    code = "not_found"
    default_message = "Not found."


class MethodNotAllowed(AppError):
    status_code = 405
    code = "method_not_allowed"
    default_message = "Method not allowed."


class Conflict(AppError):
    status_code = 409
    code = "conflict"
    default_message = "Conflict with the current state."


class LimitReached(Conflict):
    """The organization already has as many of something as it may (``noun``)."""

    noun: ClassVar[str] = "of these"
    default_message = "The organization already has as many of these as it may have."

    @classmethod
    def at(cls, limit: int) -> Self:
        return cls(f"The organization already has the most {cls.noun} it may have ({limit:,}).")


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"
    default_message = "The request body is too large."


class BatchTooLarge(PayloadTooLarge):
    code = "batch_too_large"
    default_message = "Too many items in one batch."


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "unsupported_media_type"
    default_message = "Unsupported content type."


class ValidationFailed(AppError):
    status_code = 422
    code = "validation_failed"
    default_message = "The request is not valid."


class RateLimited(AppError):
    status_code = 429
    code = "rate_limited"
    default_message = "Too many requests."

    def __init__(self, retry_after_s: int, message: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_s = max(1, retry_after_s)
        self.headers.setdefault("Retry-After", str(self.retry_after_s))


class Unavailable(AppError):
    status_code = 503
    code = "unavailable"
    default_message = "The service is temporarily unavailable."

    def __init__(
        self, message: str | None = None, *, retry_after_s: int = 5, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("Retry-After", str(retry_after_s))


class TransientError(AppError):
    """A dependency failed in a way worth retrying (database or broker down)."""

    status_code = 503
    code = "unavailable"
    default_message = "A dependency is temporarily unavailable."
