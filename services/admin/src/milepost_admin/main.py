"""The admin app for platform operators (``/admin``): JSON API and browser console."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from milepost_admin.console import accounts, auth_views, pages, tables
from milepost_admin.console.deps import LoginRequired
from milepost_admin.console.oidc import SingleSignOn
from milepost_admin.console.render import error_page
from milepost_admin.context import start_context, stop_context
from milepost_admin.routes import (
    api_keys,
    audit_log,
    auth,
    devices,
    ingest_batches,
    maps,
    operators,
    organizations,
    system,
    users,
    webhook_deliveries,
)
from milepost_admin.settings import AdminSettings, get_settings
from milepost_common.errors import NotFound
from milepost_common.web import serve as web_serve
from milepost_common.web.app import AppSpec, create_base_app
from milepost_common.web.errors import ErrorAnswer

CONSOLE_PREFIX = "/admin"
API_PREFIX = "/admin/v1/"
# Paths under /admin/ that are not the console's pages: they keep the JSON envelope.
NOT_CONSOLE = (API_PREFIX, "/admin/v1", "/admin/static/", "/admin/docs", "/admin/redoc")
NOT_CONSOLE_EXACT = ("/admin/openapi.json", "/admin/health", "/admin/ready")
# The device CSV imports take a file: they have their own, larger body limit.
IMPORT_PATHS = (
    f"{API_PREFIX}organizations/{{org_id}}/devices/import",
    f"{CONSOLE_PREFIX}/organizations/{{org_id}}/devices/import",
)
OPENAPI_TAGS = [
    {"name": "auth", "description": "Operator login (`aud=admin`)."},
    {"name": "organizations", "description": "Tenants: onboarding, settings, suspension."},
    {"name": "users", "description": "Members of organizations."},
    {"name": "operators", "description": "Platform staff (managed by superadmins)."},
    {"name": "devices", "description": "Trackers of every organization."},
    {"name": "api-keys", "description": "Keys of upstream systems."},
    {"name": "ingest-batches", "description": "Pushes received, their rejects, replays."},
    {"name": "webhook-deliveries", "description": "Deliveries of customer webhooks."},
    {"name": "audit-log", "description": "Every change and security event."},
    {"name": "system", "description": "Queues, workers, ingest rate, lag, database."},
    {
        "name": "map",
        "description": "What the console's map polls: latest positions, a device's day, alerts.",
    },
]


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)  # noqa: S101 - registered for this class only
    if request.headers.get("HX-Request"):
        return Response(status_code=401, headers={"HX-Redirect": "/admin/login"})
    return Response(status_code=303, headers={"Location": f"/admin/login?next={exc.next_path}"})


def _console_path(path: str) -> bool:
    return (
        path.startswith(f"{CONSOLE_PREFIX}/")
        and not path.startswith(NOT_CONSOLE)
        and path not in NOT_CONSOLE_EXACT
    )


def _error_page(request: Request, error: ErrorAnswer) -> Response | None:
    """The console's browser gets an error page, the JSON API keeps the envelope."""
    if not _console_path(request.url.path):
        return None
    # Not the Referer: every console page is sent with "Referrer-Policy: no-referrer", so
    # the only Referer that arrives is another site's, which "Back" must not lead to.
    return error_page(request, error, back="/admin/")


async def _not_found_page(request: Request) -> Response | None:
    """A console address that leads nowhere gets the console's own 404 page; the JSON API,
    the docs and the static files keep the kit's envelope."""
    if not _console_path(request.url.path):
        return None
    missing = ErrorAnswer(404, NotFound.code, "There is no such page in the console.", [])
    return error_page(request, missing, back="/admin/")


def create_app(settings: AdminSettings) -> FastAPI:
    spec = AppSpec(
        name="admin",
        # /admin/ is the console's home page, and its unknown pages have their own 404.
        index=False,
        not_found_page=_not_found_page,
        error_page=_error_page,
        title="Milepost admin",
        description="Organizations, users, devices, API keys, ingest batches, webhook "
        "deliveries, the audit log and the system status, for platform operators. "
        "Authenticate with `POST /admin/v1/auth/token`; `support` reads, `operator` also "
        "writes, `superadmin` also manages operators.",
        routers=(
            auth.router,
            organizations.router,
            users.router,
            operators.router,
            devices.router,
            api_keys.router,
            ingest_batches.router,
            webhook_deliveries.router,
            audit_log.router,
            system.router,
            maps.router,
        ),
        http=settings.admin,
        larger_bodies=dict.fromkeys(IMPORT_PATHS, settings.admin.max_import_body_bytes),
        on_startup=(start_context,),
        on_shutdown=(stop_context,),
        openapi_tags=OPENAPI_TAGS,
    )
    app = create_base_app(settings, spec)
    app.state.sso = SingleSignOn(settings.oidc) if settings.oidc.enabled else None
    app.include_router(auth_views.router, prefix=CONSOLE_PREFIX)
    app.include_router(accounts.router, prefix=CONSOLE_PREFIX)
    app.include_router(pages.router, prefix=CONSOLE_PREFIX)
    app.mount(
        f"{CONSOLE_PREFIX}/static",
        StaticFiles(directory=str(files("milepost_admin") / "static")),
        name="static",
    )
    tables.install(app, settings)
    app.add_exception_handler(LoginRequired, _login_required)
    # Only the SSO round trip keeps state here (state and nonce, minutes long).
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.cookie_secret("oidc-state"),
        session_cookie="milepost_admin_sso",
        max_age=600,
        path="/admin/login",
        same_site="lax",
        https_only=settings.cookie_secure,
    )
    return app


def serve() -> None:
    settings = get_settings()
    web_serve.run(lambda: create_app(settings), settings.admin)
