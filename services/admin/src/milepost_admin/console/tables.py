"""SQLAdmin's model views: read-only, behind the console session, in the console's look.

Creating, editing, deleting and exporting are off: every change goes through the
console's forms, which call the domain services (audit, hashing, side effects). Secret
columns are never shown. SQLAdmin's templates are replaced (``templates/sqladmin/``): the
console's top bar and stylesheet, no script, no "Actions" menu or selection boxes, the
name beside every id that points at an organization, device, user, key or rule, and the
console's own logout (SQLAdmin's logout route only leads back to the console).
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from sqladmin import Admin, ModelView
from sqladmin.authentication import AuthenticationBackend
from sqladmin.helpers import object_identifier_values
from sqladmin.pagination import Pagination
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import SQLModel
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from milepost_admin.console.deps import live_session
from milepost_admin.console.render import content_security_policy, static_url
from milepost_admin.console.sessions import SessionStore
from milepost_admin.settings import AdminSettings
from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts.models import Alert
from milepost_common.domain.api_keys.models import ApiKey
from milepost_common.domain.audit.models import AuditEntry
from milepost_common.domain.devices.models import Device
from milepost_common.domain.geofences.models import Geofence
from milepost_common.domain.ingest_batches.models import IngestBatch
from milepost_common.domain.operators import service as operator_service
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.trips.models import Stop, Trip
from milepost_common.domain.users.models import User
from milepost_common.domain.webhooks.models import WebhookDelivery, WebhookEndpoint

BASE_URL = "/admin/models"


@dataclass(frozen=True, slots=True)
class Reference:
    """A column holding another table's id: what to show beside it and where it links."""

    model: type[SQLModel]
    label: str
    link: str | None


REFERENCES = {
    "org_id": Reference(Organization, "name", "/admin/organizations/{}"),
    "device_id": Reference(Device, "name", "/admin/devices/{}"),
    "api_key_id": Reference(ApiKey, "name", "/admin/api-keys/{}"),
    "created_by_id": Reference(User, "email", None),
    "actor_id": Reference(User, "email", None),
    "acknowledged_by": Reference(User, "email", None),
    "rule_id": Reference(AlertRule, "name", None),
}


async def _referenced(
    maker: Any, columns: Iterable[str], rows: Iterable[Any]
) -> dict[str, dict[str, tuple[str, str | None]]]:
    """For each reference column shown: id → (name, console link), one query per column."""
    found: dict[str, dict[str, tuple[str, str | None]]] = {}
    rows = list(rows)
    async with maker() as session:
        for name in columns:
            reference = REFERENCES.get(name)
            ids = {getattr(r, name) for r in rows} - {None} if reference else set()
            if reference is None or not ids:
                continue
            labels = await operator_service.find_labels(
                session, reference.model, reference.label, ids
            )
            found[name] = {
                str(i): (label, reference.link.format(i) if reference.link else None)
                for i, label in labels.items()
            }
    return found


class _AppSessionmaker(async_sessionmaker[AsyncSession]):
    """The app's own session factory, looked up per use (it is made in the lifespan)."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__()
        self._app = app

    def __call__(self, **local_kw: Any) -> AsyncSession:
        maker: async_sessionmaker[AsyncSession] = self._app.state.db.sessionmaker
        return maker(**local_kw)


class ConsoleAuth(AuthenticationBackend):
    """SQLAdmin lets in whoever holds a live console session of an active operator."""

    def __init__(self, app: FastAPI, settings: AdminSettings) -> None:
        super().__init__(
            secret_key=settings.cookie_secret("sqladmin"),
            session_cookie="milepost_admin_tables",
            https_only=settings.cookie_secure,
            same_site="lax",
        )
        self._app = app
        self._cookie = settings.admin.session_cookie

    async def login(self, request: Request) -> bool:  # noqa: ARG002 - the console logs in
        return False

    async def logout(self, request: Request) -> Response:  # noqa: ARG002
        return RedirectResponse("/admin/", status_code=303)

    async def authenticate(self, request: Request) -> Response | bool:
        store: SessionStore = self._app.state.ctx.console_sessions
        async with self._app.state.db.sessionmaker() as session:
            live = await live_session(session, store, request.cookies.get(self._cookie))
        if live is not None:
            record, user = live
            # What the console's top bar shows (its logout form needs the CSRF token).
            request.state.console_me = user
            request.state.console_csrf = record.csrf
            return True
        return RedirectResponse(f"/admin/login?next={BASE_URL}/", status_code=303)


class ReadOnly(ModelView):
    can_create = False
    can_edit = False
    can_delete = False
    can_export = False
    page_size = 50

    async def list(self, request: Request) -> Pagination:
        """The page, and the names its reference columns point at (for the template)."""
        if "\x00" in request.query_params.get("search", ""):
            # No text holds a NUL, so nothing matches; Postgres would refuse the term, and
            # its error, raised past SQLAdmin's own error page, would be a 500.
            return Pagination(rows=[], page=1, page_size=self.page_size, count=0)
        pagination = await super().list(request)
        request.state.references = await _referenced(
            self.session_maker, self._list_prop_names, pagination.rows
        )
        return pagination

    async def get_object_for_details(self, request: Request) -> Any:
        """The row, or None (SQLAdmin's 404) for an address whose id is not one of the
        table's: SQLAdmin would fail converting it (a malformed UUID is a 500 there)."""
        try:
            object_identifier_values(request.path_params["pk"], self.model)
        except ValueError:
            return None
        row = await super().get_object_for_details(request)
        request.state.references = await _referenced(
            self.session_maker, self._details_prop_names, [row] if row is not None else []
        )
        return row


def _view(model: type[Any], label: str, icon: str, hidden: tuple[str, ...] = ()) -> type[ModelView]:
    columns = [name for name in model.model_fields if name not in hidden]
    attrs: dict[str, Any] = {
        "name": label,
        "name_plural": label,
        "icon": icon,
        "column_list": [getattr(model, c) for c in columns[:8]],
        "column_details_list": [getattr(model, c) for c in columns],
        "column_searchable_list": [
            getattr(model, c)
            for c in ("name", "email", "unique_id", "action", "prefix")
            if c in columns
        ],
    }
    return types.new_class(
        f"{model.__name__}Table", (ReadOnly,), {"model": model}, lambda ns: ns.update(attrs)
    )


VIEWS = (
    _view(Organization, "Organizations", "fa-solid fa-building"),
    _view(User, "Users", "fa-solid fa-user", ("password_hash",)),
    _view(Device, "Devices", "fa-solid fa-truck"),
    _view(ApiKey, "API keys", "fa-solid fa-key", ("key_hash",)),
    _view(IngestBatch, "Ingest batches", "fa-solid fa-inbox"),
    _view(Trip, "Trips", "fa-solid fa-route"),
    _view(Stop, "Stops", "fa-solid fa-square-parking"),
    _view(Geofence, "Geofences", "fa-solid fa-draw-polygon"),
    _view(AlertRule, "Alert rules", "fa-solid fa-bell"),
    _view(Alert, "Alerts", "fa-solid fa-triangle-exclamation"),
    # The URL's path and query may carry the receiver's token: the organization's page shows
    # its scheme, host and port.
    _view(WebhookEndpoint, "Webhook endpoints", "fa-solid fa-plug", ("secret_encrypted", "url")),
    _view(WebhookDelivery, "Webhook deliveries", "fa-solid fa-paper-plane"),
    _view(AuditEntry, "Audit log", "fa-solid fa-scroll"),
)


class _ConsoleHeaders:
    """The console's CSP and ``no-store`` on the tables' pages too: SQLAdmin renders them
    itself, not through the console's responses, and they show every table."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", csp.encode()),
            (b"cache-control", b"no-store"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI, settings: AdminSettings) -> None:
    csp = content_security_policy(settings.admin.map_tile_url)
    admin = Admin(
        app,
        session_maker=_AppSessionmaker(app),
        base_url=BASE_URL,
        title="Tables (read-only)",
        authentication_backend=ConsoleAuth(app, settings),
        middlewares=[Middleware(_ConsoleHeaders, csp=csp)],
        # The console's templates directory: its sqladmin/ overrides SQLAdmin's pages.
        templates_dir=str(files("milepost_admin") / "templates"),
    )
    admin.templates.env.globals.update(static=static_url)
    for view in VIEWS:
        # sqladmin keeps the session maker (and its Admin) on the view class: a subclass per
        # app, or the last app built in a process would serve the tables of every other one.
        admin.add_view(type(view.__name__, (view,), {}))
