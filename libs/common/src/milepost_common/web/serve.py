"""Run one app with uvicorn: one server process per app instance (metrics stay per process)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import struct
from collections.abc import Callable, Iterable
from typing import Any, cast
from wsgiref.simple_server import WSGIServer

import uvicorn
from fastapi import FastAPI
from prometheus_client import start_http_server
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from milepost_common.settings import HttpSettings

# How long the gateway keeps an idle connection to an app (Traefik's default
# idleConnTimeout). The app keeps its side open longer, so the gateway is the one that closes
# an idle connection: with uvicorn's 5 s default, the gateway could send a request on a
# connection the app was closing that instant and answer 502 (a POST it cannot retry), as
# seen after the idle gaps of a client backing off during a Postgres outage.
GATEWAY_IDLE_S = 90

# The largest WebSocket message a client may send (uvicorn's default is 16 MiB). The live
# stream's largest legitimate one, a subscription to 10,000 vehicle ids, is ~400 KB; a larger
# message closes the connection with 1009 before any of it is parsed.
WS_MAX_MESSAGE_BYTES = 1024 * 1024


# Unread bytes a WebSocket peer may leave queued before it is reset. The app's own sends wait
# once 64 KiB are (uvicorn's high-water mark); only the pongs uvicorn writes for each ping,
# whether or not the peer reads, can go past it.
WS_MAX_UNREAD_BYTES = 1024 * 1024


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol (the one it picks itself), except that a peer that reads
    nothing cannot make the server keep what it does not take:

    - a connection whose app has returned is reset when the peer takes nothing more: at once
      if the app could not even write its close frame (a live-stream client cut off for
      reading nothing), else after the closing handshake's timeout. uvicorn closes such a
      socket politely, which waits until the peer has read every byte queued for it: the
      socket and megabytes of buffers stayed as long as the client liked;
    - a peer that pings with more than ``WS_MAX_UNREAD_BYTES`` unread is reset: each pong
      was queued regardless, and memory grew as fast as the peer could send pings."""

    async def run_asgi(self) -> None:
        await super().run_asgi()
        delay = self.close_timeout if self.close_sent else 0.0
        self.loop.call_later(delay, self._reset_unless_gone)

    def handle_ping(self) -> None:
        if self.transport.get_write_buffer_size() > WS_MAX_UNREAD_BYTES:
            self._reset_unless_gone()
            return
        super().handle_ping()

    def _reset_unless_gone(self) -> None:
        if self.disconnected:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: the kernel sends RST and drops what is queued instead of keeping it.
            with contextlib.suppress(OSError):  # already closed by an earlier reset
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


# Bytes a connection holds back before writing them at once: past it, the transport has
# them and pauses the app as usual (uvicorn's flow control) when the peer reads slowly.
COALESCE_MAX_BYTES = 64 * 1024


class _CoalescingTransport:
    """A connection's transport whose writes of one loop iteration go out in one call, at the
    next turn of the loop (or before a close, an upgrade, or once ``COALESCE_MAX_BYTES`` are
    held), as Netty's flush consolidation does.

    uvicorn writes an answer's head and its body separately, and uvloop sends each at once:
    two system calls and two TCP segments for a small answer. Written together at the turn,
    the writes of a busy iteration also follow each other without the app's code in between:
    ``/api/health`` costs the server 94 µs of CPU instead of 123 (bench/api). Writing each
    complete answer at once instead (one call too) measured no faster than two calls. Under
    load an answer waits for the rest of its iteration, which the server would spend anyway;
    idle, the next turn follows at once. Everything but writing is the transport's own."""

    __slots__ = ("_held", "_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._held = 0

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)
        self._held += len(data)
        if self._held > COALESCE_MAX_BYTES:
            self.flush()

    def writelines(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._held

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._transport.set_protocol(protocol)

    def flush(self) -> None:
        pending, self._pending, self._held = self._pending, [], 0
        if pending and not self._transport.is_closing():
            self._transport.writelines(pending)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools), writing each answer in one call."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        coalescing = _CoalescingTransport(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(cast(asyncio.Transport, coalescing))


# How uvicorn speaks HTTP and WebSocket for the apps (and for tests serving one in-process).
PROTOCOLS: dict[str, Any] = {
    "http": HttpProtocol,
    "ws": WebSocketProtocol,
    "ws_max_size": WS_MAX_MESSAGE_BYTES,
}
# For an app whose requests are long CPU steps (ingest parses a batch of 1,000 fixes in one):
# an answer held for the loop's turn would wait behind another request's step, and its few
# answers a second gain nothing from a write fewer. uvicorn's own protocol writes at once.
WRITE_AT_ONCE: dict[str, Any] = {**PROTOCOLS, "http": HttpToolsProtocol}


# Young-generation threshold of the processes whose requests allocate thousands of objects
# (ingest's pushes, the api's pages of fixes): with the default 700, the collector ran a few
# times a request. Cycles among the requests' objects are still collected, less often.
BUSY_GC_THRESHOLDS = (100_000, 50, 100)


def start_metrics_server(http: HttpSettings) -> WSGIServer | None:
    """With `http.metrics_port` set, serve the process's metrics there (at any path, as
    prometheus-client does; Prometheus asks for /metrics) from a daemon thread, on
    `http.metrics_host` or the app's own host; the app itself then has no /metrics route
    (web.app). Returns the server to shut down, or None where the app serves /metrics."""
    if http.metrics_port is None:
        return None
    server, _ = start_http_server(http.metrics_port, addr=http.metrics_host or http.host)
    return server


def run(
    app_factory: Callable[[], FastAPI], http: HttpSettings, protocols: dict[str, Any] = PROTOCOLS
) -> None:
    app = app_factory()
    # The app lives as long as the process: collected once, then out of the collector's
    # sight, so a full collection no longer walks its ~180,000 objects (63 ms, a pause for
    # every request in flight, several times a minute under load).
    gc.collect()
    gc.freeze()
    metrics_server = start_metrics_server(http)
    try:
        uvicorn.run(
            app,
            host=http.host,
            port=http.port,
            workers=1,
            access_log=False,  # the request middleware logs route templates, never raw paths
            proxy_headers=True,
            forwarded_allow_ips=http.forwarded_allow_ips,
            server_header=False,
            log_config=None,
            timeout_keep_alive=GATEWAY_IDLE_S + 10,
            **protocols,
        )
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
