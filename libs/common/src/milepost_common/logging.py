"""Structured JSON logs (structlog), with the request context bound per request."""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

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
    itself on a fast request. Honours the level set for the ``milepost.access`` logger.

    Inside an event loop the lines of one loop iteration are written together, at the next
    iteration: a write to a file or pipe cost ``/api/health`` about a sixth of its CPU (~20 µs
    of 125 on the bench's VM, bench/api), and under load many requests end in one iteration.
    A line waits for the loop to turn, never for a timer; lines of another logger written in
    between may come before it (each carries its timestamp)."""

    def __init__(self, name: str = "milepost.access") -> None:
        self._logger = logging.getLogger(name)
        # The lines not written yet, where they go and the loop that writes them.
        self._lines: list[str] = []
        self._stream: TextIO = sys.stdout
        self._loop: asyncio.AbstractEventLoop | None = None
        atexit.register(self.flush)

    def info(self, event: str, **fields: Any) -> None:
        if not self._logger.isEnabledFor(logging.INFO):
            return
        line = {**fields, "event": event, **structlog.contextvars.get_contextvars()}
        line["level"] = "info"
        line["timestamp"] = datetime.now(UTC)
        _redact(None, "", line)
        text = orjson.dumps(line, option=orjson.OPT_UTC_Z).decode() + "\n"
        stream = sys.stdout
        if self._lines and (stream is not self._stream or not _running(self._loop)):
            self.flush()  # lines for a stream or a loop that is gone (a test's)
        self._lines.append(text)
        if len(self._lines) > 1:
            return
        self._stream = stream
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the lines not written yet (tests call it to read them at once)."""
        lines, self._lines = self._lines, []
        if lines and not self._stream.closed:
            self._stream.write("".join(lines))
            self._stream.flush()


def _running(loop: asyncio.AbstractEventLoop | None) -> bool:
    return loop is not None and loop.is_running()


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
