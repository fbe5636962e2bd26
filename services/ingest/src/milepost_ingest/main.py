"""The ingest app for upstream systems (``/ingest``); stays ready while Redis is down."""

from __future__ import annotations

from fastapi import FastAPI

from milepost_common.web import serve as web_serve
from milepost_common.web.app import AppSpec, create_base_app
from milepost_ingest.context import start_context, stop_context
from milepost_ingest.routes import batches, osmand, positions
from milepost_ingest.settings import IngestSettings, get_settings


def create_app(settings: IngestSettings) -> FastAPI:
    spec = AppSpec(
        name="ingest",
        title="Milepost ingest",
        description="Positions from telematics gateways, trackers and OsmAnd clients. "
        "Authenticate with an API key: `Authorization: Bearer <key>` or `X-API-Key`.",
        routers=(positions.router, batches.router, osmand.router),
        http=settings.ingest,
        redis_required_for_ready=False,
        # Each push is read as it streams, within ingest's own limits (as sent and decoded),
        # once its key is checked: a generic limit in front would only duplicate that.
        limit_bodies=False,
        on_startup=(start_context,),
        on_shutdown=(stop_context,),
        openapi_tags=[
            {"name": "positions", "description": "Batches of fixes (JSON, NDJSON)."},
            {"name": "batches", "description": "What became of a batch."},
            {"name": "osmand", "description": "Single fixes from OsmAnd-protocol clients."},
        ],
    )
    return create_base_app(settings, spec)


def serve() -> None:
    settings = get_settings()
    web_serve.run(lambda: create_app(settings), settings.ingest, web_serve.WRITE_AT_ONCE)
