"""A host name whose DNS never answers, for tests (DNS is outside the system under test).

``socket.getaddrinfo`` for that name blocks its calling thread, as the system resolver does
for a black-holed name, until the test ends; every other name resolves as usual.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class BlackHole:
    """The calls made for the name so far, and how many of them are blocked now."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0
        self.blocked = 0
        self.lock = threading.Lock()
        self.released = threading.Event()


@contextmanager
def black_holed(name: str, *, longest_s: float = 60.0) -> Iterator[BlackHole]:
    """Resolving ``name`` blocks (at most ``longest_s``, and never past the block), then fails
    as a resolver that gave up does."""
    hole = BlackHole(name)
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        asked = host.decode() if isinstance(host, bytes) else host
        if not isinstance(asked, str) or asked.lower() != name:
            return real(host, *args, **kwargs)
        with hole.lock:
            hole.calls += 1
            hole.blocked += 1
        try:
            hole.released.wait(longest_s)
        finally:
            with hole.lock:
                hole.blocked -= 1
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    socket.getaddrinfo = getaddrinfo
    try:
        yield hole
    finally:
        hole.released.set()
        socket.getaddrinfo = real
