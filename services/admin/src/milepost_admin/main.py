"""The admin app for platform operators (``/admin``): JSON API and browser console."""

from __future__ import annotations

from fastapi import FastAPI

from milepost_admin.settings import AdminSettings, get_settings
from milepost_common.web import serve as web_serve
from milepost_common.web.app import AppSpec, create_base_app


def create_app(settings: AdminSettings) -> FastAPI:
    spec = AppSpec(
        name="admin",
        title="Milepost admin",
        description="Organizations, users, devices, API keys, ingest batches and the audit log.",
        routers=(),
        http=settings.admin,
    )
    return create_base_app(settings, spec)


def serve() -> None:
    settings = get_settings()
    web_serve.run(lambda: create_app(settings), settings.admin)
