"""Structured JSON logs (structlog), with the request context bound per request."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

# Keys never written to a log line, whatever a caller binds (secrets, credentials).
_REDACTED_KEYS = frozenset(
    {
        "password",
        "token",
        "access_token",
        "refresh_token",
        "key",
        "secret",
        "authorization",
        "api_key",
    }
)


def _redact(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in _REDACTED_KEYS.intersection(event):
        event[key] = "[redacted]"
    return event


def _dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default).decode()


def configure_logging(level: str = "INFO", *, service: str) -> None:
    """JSON lines on stdout for structlog and the standard library alike."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    structlog.contextvars.bind_contextvars(service=service)
    # Uvicorn's own access log prints raw paths (the OsmAnd key is in one): ours replaces it.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # httpx logs every request's full URL at INFO (httpcore its connections at DEBUG); an
    # outbound webhook URL often carries the receiver's token in its path or query. Callers
    # log their own line naming the endpoint by id instead.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


class AccessLog:
    """One JSON line per request, written straight to stdout: the same fields a structlog
    line would carry (the request context bound with structlog, ``level``, ``timestamp``),
    without the standard library's record machinery, which costs several times the line
    itself on a fast request. Honours the level set for the ``milepost.access`` logger."""

    def __init__(self, name: str = "milepost.access") -> None:
        self._logger = logging.getLogger(name)

    def info(self, event: str, **fields: Any) -> None:
        if not self._logger.isEnabledFor(logging.INFO):
            return
        line = {**fields, "event": event, **structlog.contextvars.get_contextvars()}
        line["level"] = "info"
        line["timestamp"] = datetime.now(UTC)
        _redact(None, "", line)
        stream = sys.stdout
        stream.write(orjson.dumps(line, option=orjson.OPT_UTC_Z).decode() + "\n")
        stream.flush()


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
