"""The app factory all three apps use: lifespan, middlewares, errors, health, OpenAPI, metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import APIRouter, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis

from milepost_common.db import create_database
from milepost_common.logging import configure_logging
from milepost_common.settings import CommonSettings, HttpSettings
from milepost_common.tasks import Publisher
from milepost_common.tracing import configure_tracing
from milepost_common.web.body_limit import BodyLimitMiddleware, document_body_limit
from milepost_common.web.docs import install_docs, install_index
from milepost_common.web.errors import ErrorAnswer, install_error_handlers
from milepost_common.web.health import Check, check_postgres, check_redis, health_router
from milepost_common.web.middleware import EdgeMiddleware
from milepost_common.web.openapi import document_common_responses

Hook = Callable[[FastAPI], Awaitable[None]]


@dataclass(frozen=True)
class AppSpec:
    """What distinguishes one app: its name, URL prefix, routers and readiness needs."""

    name: str
    title: str
    description: str
    routers: Sequence[APIRouter]
    http: HttpSettings
    redis_required_for_ready: bool = True
    # Refuse bodies over `http.max_body_bytes` before any route reads them; off only for an
    # app that reads every body itself within limits of its own (ingest).
    limit_bodies: bool = True
    # Path templates of the few routes that take a larger body, and their limits.
    larger_bodies: Mapping[str, int] = field(default_factory=dict)
    on_startup: Sequence[Hook] = field(default_factory=tuple)
    on_shutdown: Sequence[Hook] = field(default_factory=tuple)
    openapi_tags: list[dict[str, str]] = field(default_factory=list)
    # `/<name>` and `/<name>/` point to the docs (a browser is sent there, a client gets
    # the links in JSON); off for an app that serves a page of its own there (admin).
    index: bool = True
    # Answers a "no such route" 404 with a page of the app's own (an HTML console), or
    # returns None to keep the envelope.
    not_found_page: Callable[[Request], Awaitable[Response | None]] | None = None
    # Answers any error with a page of the app's own for the requests it claims (an HTML
    # console), or returns None to keep the envelope.
    error_page: Callable[[Request, ErrorAnswer], Response | None] | None = None

    @property
    def prefix(self) -> str:
        return f"/{self.name}"


def operation_id(route: APIRoute) -> str:
    """Stable operation ids: the handler's name, which is the service function's name."""
    return route.name


async def metrics(_: Request) -> Response:
    """Prometheus exposition on the app's own port (Traefik never routes it)."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: CommonSettings = app.state.settings
    spec: AppSpec = app.state.spec
    app.state.db = create_database(settings.db, application_name=f"milepost-{spec.name}")
    app.state.redis = Redis.from_url(
        settings.redis.cache_url,
        socket_timeout=settings.redis.socket_timeout_s,
        socket_connect_timeout=settings.redis.socket_timeout_s,
        health_check_interval=30,
    )
    app.state.publisher = Publisher(settings.redis, settings.celery)
    try:
        for hook in spec.on_startup:
            await hook(app)
        yield
    finally:
        for hook in spec.on_shutdown:
            await hook(app)
        app.state.publisher.close()
        await app.state.redis.aclose()
        await app.state.db.dispose()


def create_base_app(settings: CommonSettings, spec: AppSpec) -> FastAPI:
    configure_logging(settings.log_level, service=spec.name)
    # Before the app exists: FastAPI's request spans use the global provider. Without an
    # endpoint its telemetry has nothing to record and is switched off.
    tracing = configure_tracing(settings, service=spec.name)
    prefix = spec.prefix
    app = FastAPI(
        title=spec.title,
        description=spec.description,
        version="1.0.0",
        lifespan=_lifespan,
        openapi_url=f"{prefix}/openapi.json",
        # Served by install_docs from the app's own files, not FastAPI's CDN pages.
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=operation_id,
        openapi_tags=spec.openapi_tags or None,
        telemetry={"tracing": tracing, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.spec = spec
    app.state.traced = tracing
    checks: dict[str, Check] = {"postgres": check_postgres}
    if spec.redis_required_for_ready:
        checks["redis"] = check_redis
    app.include_router(health_router(checks), prefix=prefix)
    for router in spec.routers:
        app.include_router(router, prefix=prefix)
    if spec.http.metrics_port is None:
        # Else web.serve serves them on their own port, which the gateway never reaches.
        app.add_api_route("/metrics", metrics, include_in_schema=False)
    openapi_url = f"{prefix}/openapi.json"
    install_docs(app, prefix, spec.title, openapi_url)
    if spec.index:
        install_index(app, prefix, spec.title, openapi_url)
    install_error_handlers(app)
    document_common_responses(app)
    # Added innermost first: the edge is outermost, so every answer (errors and 500s
    # included) carries the request id and the security headers and is logged and counted.
    if spec.limit_bodies:
        # Outside every reader of a body (routes, dependencies, authentication), inside the
        # request context and CORS so that its 413 carries the request id and CORS headers.
        app.add_middleware(
            BodyLimitMiddleware, max_bytes=spec.http.max_body_bytes, larger=spec.larger_bodies
        )
        document_body_limit(app, spec.http.max_body_bytes, spec.larger_bodies)
    if spec.http.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=spec.http.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "ETag", "Retry-After"],
        )
    app.add_middleware(EdgeMiddleware, app_name=spec.name, trusted_hosts=spec.http.trusted_hosts)
    return app
