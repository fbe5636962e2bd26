"""The ingest app for upstream systems (``/ingest``); stays ready while Redis is down."""

from __future__ import annotations

from fastapi import FastAPI

from milepost_common.web import serve as web_serve
from milepost_common.web.app import AppSpec, create_base_app
from milepost_ingest.settings import IngestSettings, get_settings


def create_app(settings: IngestSettings) -> FastAPI:
    spec = AppSpec(
        name="ingest",
        title="Milepost ingest",
        description="Positions from telematics gateways, trackers and OsmAnd clients.",
        routers=(),
        http=settings.ingest,
        redis_required_for_ready=False,
    )
    return create_base_app(settings, spec)


def serve() -> None:
    settings = get_settings()
    web_serve.run(lambda: create_app(settings), settings.ingest)
