"""Console routes show a form's error on the form that was sent, next to its field, with the
input kept (every other error of a console path is the console's error page: main.py)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.datastructures import UploadFile

from milepost_common.errors import AppError

_FORM = "__console_form__"
# Never sent back into a page: the CSRF token comes from the session, passwords are typed again.
_NOT_KEPT = frozenset({"csrf_token", "password"})
# Errors about what was typed; the others (401, 403, 404, 429, 5xx) keep their error page.
_FORM_STATUSES = frozenset({400, 409, 413, 422})
EndpointT = TypeVar("EndpointT", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class FormState:
    """A form sent back with its errors: the values as sent, the errors by field and a
    message for the form as a whole (an error that belongs to no field)."""

    form_id: str
    values: Mapping[str, list[str]] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)
    message: str | None = None

    def value(self, form_id: str, name: str, default: Any = "") -> Any:
        """The sent value of the field when this is the form, else ``default``."""
        if form_id != self.form_id or name not in self.values:
            return default
        return self.values[name][0] if self.values[name] else ""

    def chosen(self, form_id: str, name: str, option: str, default: bool) -> bool:
        """Whether a checkbox or option was sent (``default`` for another form)."""
        if form_id != self.form_id:
            return default
        return option in self.values.get(name, [])

    def error(self, form_id: str, name: str) -> str | None:
        return self.errors.get(name) if form_id == self.form_id else None

    def problem(self, form_id: str) -> str | None:
        return self.message if form_id == self.form_id else None


FormPage = Callable[[Request, FormState], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class _FormSpec:
    form_id: str
    page: FormPage
    fields: Mapping[type[AppError], str]


def shown_on(
    form_id: str, page: FormPage, *, fields: Mapping[type[AppError], str] | None = None
) -> Callable[[EndpointT], EndpointT]:
    """Mark a form's route: when it fails with an error about the input (400, 409, 413,
    422), ``page`` is rendered again (status of the error) with the form's values and
    errors instead of the error page. ``fields`` names the field a domain error is about
    (``DeviceUniqueIdTaken`` → ``unique_id``)."""

    def mark(endpoint: EndpointT) -> EndpointT:
        setattr(endpoint, _FORM, _FormSpec(form_id, page, dict(fields or {})))
        return endpoint

    return mark


def _clean(message: str) -> str:
    return re.sub(r"^(Value|Assertion) error, ", "", message)


def _field_errors(details: list[dict[str, Any]], sent: Mapping[str, list[str]]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for detail in details:
        names = [p for p in detail.get("loc", []) if isinstance(p, str) and p != "body"]
        name = next((n for n in reversed(names) if n in sent), names[-1] if names else None)
        if name is not None:
            errors.setdefault(name, _clean(str(detail.get("msg", ""))))
    return errors


async def _state(request: Request, spec: _FormSpec, exc: Exception) -> tuple[FormState, int]:
    form = await request.form()
    sent: dict[str, list[str]] = {}
    for name, value in form.multi_items():
        if name not in _NOT_KEPT and not isinstance(value, UploadFile):
            sent.setdefault(name, []).append(value)
    if isinstance(exc, RequestValidationError):
        errors = _field_errors(list(exc.errors()), sent)
        return FormState(spec.form_id, sent, errors, None if errors else "Check the form."), 422
    assert isinstance(exc, AppError)  # noqa: S101 - the only other kind caught
    named = next((f for kind, f in spec.fields.items() if isinstance(exc, kind)), None)
    if named is not None:
        return FormState(spec.form_id, sent, {named: exc.message}), exc.status_code
    errors = _field_errors(exc.details, sent)
    message = exc.message if not errors else None
    return FormState(spec.form_id, sent, errors, message), exc.status_code


def _about_the_form(exc: AppError | RequestValidationError) -> bool:
    """Whether the error is about what was typed in the form. An address that names no valid
    id (or a malformed query) is not: the form's page cannot be shown again for it, and the
    error page answers instead."""
    if isinstance(exc, RequestValidationError):
        return all(tuple(error["loc"][:1]) == ("body",) for error in exc.errors())
    return exc.status_code in _FORM_STATUSES


class ConsoleRoute(APIRoute):
    """A console route: a form route marked with ``shown_on`` answers an error about its
    input with its page shown again."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        spec: _FormSpec | None = getattr(self.endpoint, _FORM, None)
        if spec is None:
            return handler

        async def form_shown_again(request: Request) -> Response:
            try:
                return await handler(request)
            except (AppError, RequestValidationError) as exc:
                if not _about_the_form(exc):
                    raise
                state, status_code = await _state(request, spec, exc)
                response = await spec.page(request, state)
                response.status_code = status_code
                return response

        return form_shown_again
