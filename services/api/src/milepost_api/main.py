"""The public API app for fleet owners' apps (``/api``)."""

from __future__ import annotations

from fastapi import FastAPI

from milepost_api.settings import ApiSettings, get_settings
from milepost_common.web import serve as web_serve
from milepost_common.web.app import AppSpec, create_base_app


def create_app(settings: ApiSettings) -> FastAPI:
    spec = AppSpec(
        name="api",
        title="Milepost public API",
        description="Vehicles, positions, trips, stops, alerts and more for fleet owners' apps.",
        routers=(),
        http=settings.api,
    )
    return create_base_app(settings, spec)


def serve() -> None:
    settings = get_settings()
    web_serve.run(lambda: create_app(settings), settings.api)
