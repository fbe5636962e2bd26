"""OpenTelemetry tracing, on only when an OTLP endpoint is set (``MILEPOST_OTEL__ENDPOINT``).

FastAPI's own instrumentation makes the request spans; SQLAlchemy, Redis, httpx and Celery
spans join them, and Celery carries the trace from the app that sends a task into the worker
that runs it. Spans leave in batches over OTLP/HTTP; an unreachable collector costs dropped
spans, never a failed request.

Off (no endpoint), nothing is installed: the OpenTelemetry API stays a no-op. One provider per
process (the global one); a prefork worker child configures its own after the fork.

Raw paths and URLs never leave the process, as in the logs: an OsmAnd key travels in its path
and a customer's webhook URL can hold a token. Server spans keep the route template
(``http.route``), client spans the origin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from milepost_common.logging import get_logger

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from milepost_common.settings import CommonSettings

log = get_logger("milepost.tracing")
REDACTED = "[redacted]"

_provider: TracerProvider | None = None


class _NoRawUrls(SpanProcessor):
    """Overwrites raw paths, queries and full URLs when a span starts, before any export."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:  # noqa: ARG002 - the SDK's signature
        attributes = span.attributes or {}
        for name in ("url.path", "url.query", "http.target"):
            if name in attributes:
                span.set_attribute(name, REDACTED)
        for name in ("url.full", "http.url"):
            value = attributes.get(name)
            if isinstance(value, str):
                parts = urlsplit(value)
                span.set_attribute(name, f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}")

    def on_end(self, span: ReadableSpan) -> None:
        pass


def _shown(endpoint: str) -> str:
    """The endpoint as a log line may name it: no credentials, no query (a collector's token
    may ride in either)."""
    parts = urlsplit(endpoint)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


def configure_tracing(settings: CommonSettings, *, service: str) -> bool:
    """Install the tracer provider and the instrumentations once per process when an endpoint
    is configured; True when tracing is on."""
    global _provider
    otel = settings.otel
    if not otel.endpoint:
        return False
    if _provider is not None:
        return True
    ratio = TraceIdRatioBased(otel.sample_ratio)
    _provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": f"milepost-{service}",
                "service.namespace": "milepost",
                "deployment.environment.name": settings.env.value,
            }
        ),
        # A remote parent's sampled flag is the caller's to set: the ratio decides instead (by
        # trace id, so the api and the worker it sends a task to still agree).
        sampler=ParentBased(
            root=ratio,
            remote_parent_sampled=ratio,
            remote_parent_not_sampled=ratio,
        ),
    )
    _provider.add_span_processor(_NoRawUrls())
    _provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(
                endpoint=otel.endpoint.rstrip("/") + "/v1/traces", timeout=otel.timeout_s
            )
        )
    )
    trace.set_tracer_provider(_provider)
    RedisInstrumentor().instrument(tracer_provider=_provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=_provider)
    CeleryInstrumentor().instrument(tracer_provider=_provider)  # type: ignore[no-untyped-call]
    log.info("tracing_on", endpoint=_shown(otel.endpoint), sample_ratio=otel.sample_ratio)
    return True


def trace_engine(engine: AsyncEngine) -> None:
    """SQL spans for this engine (its statements, never their parameters) when tracing is on.

    The instrumentor is one per process and ignores a second call: only the first engine of
    a process is traced, which is all there is (one engine per app and per worker child)."""
    if _provider is not None:
        # The instrumentation declares SQLAlchemy < 2.1; its engine event hooks work on 2.1
        # unchanged (api tests/test_tracing.py checks the spans), so its version check is skipped.
        SQLAlchemyInstrumentor().instrument(
            engine=engine.sync_engine, tracer_provider=_provider, skip_dep_check=True
        )


def shutdown_tracing() -> None:
    """Export what is still buffered (at process exit)."""
    if _provider is not None:
        _provider.shutdown()
