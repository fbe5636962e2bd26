"""Customers' webhook receivers as local test servers on 127.0.0.1 (one thread per request):
one that drips its answer, one whose answer never ends, one that holds requests."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any


class RawServer:
    """A TCP server answering each connection with ``handle(conn)`` in a thread of its own."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self._handle = handle
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        # OSError: the client hung up, what these receivers are for.
        with conn, suppress(OSError):
            read_request(conn)
            self._handle(conn)

    def close(self) -> None:
        self.closed.set()
        self._listener.close()


def read_request(conn: socket.socket) -> bytes:
    """Read one request with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def drip(seconds: int) -> Callable[[socket.socket], None]:
    """An answer sent one byte per second for ``seconds`` seconds (its status line unfinished)."""

    def handle(conn: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[:seconds]:
            conn.sendall(bytes([byte]))
            time.sleep(1)

    return handle


class Endless:
    """``200`` with a chunked body that never ends; counts the bytes the client took."""

    def __init__(self) -> None:
        self.sent = 0

    def __call__(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
        while True:
            conn.sendall(chunk)
            self.sent += len(chunk)


class Holding(http.server.BaseHTTPRequestHandler):
    """Holds each POST until ``release`` is set (or ``hold_s`` passes), then answers 200;
    counts the requests in flight per path, and the most seen at once."""

    hold_s = 30.0
    release = threading.Event()
    lock = threading.Lock()
    in_flight: dict[str, int] = {}
    most: dict[str, int] = {}
    done: list[str] = []

    @classmethod
    def reset(cls, hold_s: float) -> None:
        cls.hold_s, cls.release = hold_s, threading.Event()
        cls.in_flight, cls.most, cls.done = {}, {}, []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        cls = type(self)
        with cls.lock:
            cls.in_flight[self.path] = cls.in_flight.get(self.path, 0) + 1
            cls.most[self.path] = max(cls.most.get(self.path, 0), cls.in_flight[self.path])
        cls.release.wait(cls.hold_s)
        with cls.lock:
            cls.in_flight[self.path] -= 1
            cls.done.append(self.path)
        try:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        except OSError:
            pass  # the client gave up (its deadline)

    def log_message(self, *args: Any) -> None:
        return


def serve_holding(hold_s: float) -> tuple[http.server.ThreadingHTTPServer, int]:
    """A ``Holding`` receiver (its counters reset); the caller shuts the server down."""
    Holding.reset(hold_s)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Holding)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])
