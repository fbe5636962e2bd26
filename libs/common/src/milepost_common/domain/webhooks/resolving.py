"""Receivers' host names, resolved in a small pool of threads of their own.

``socket.getaddrinfo`` cannot be interrupted: an attempt's deadline ends the wait for it, not
the thread, and a name whose DNS never answers holds that thread for as long as the system
resolver keeps retrying (30 s and more). Run in the event loop's default executor (or, under
uvloop, libuv's thread pool), a few such attempts would hold every thread of a pool that the
whole process shares, and every other receiver's delivery would wait behind them. Here:

- the threads are this module's alone, at most ``RESOLVER_THREADS`` per process;
- one resolution per host name is in flight at a time: a later attempt for the same name
  waits for the one under way instead of taking another thread, so a black-holed name holds
  one thread however often it is tried;
- a resolution still queued when its last waiter has given up is dropped.

Nothing is cached once a resolution ends: every attempt judges what its receiver's name
resolves to then.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass

# Each thread is held only while the system resolver works on one distinct name; enough
# that a few black-holed names at once leave threads for everyone else's.
RESOLVER_THREADS = 8


@dataclass(slots=True)
class _Lookup:
    future: Future[list[str]]
    waiters: int = 0


def _addresses(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _settle(waiter: asyncio.Future[list[str]], done: Future[list[str]]) -> None:
    if waiter.done():  # its attempt gave up (deadline, cancellation)
        return
    if done.cancelled():
        waiter.cancel()
        return
    error = done.exception()
    if error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(done.result())


async def _outcome(future: Future[list[str]]) -> list[str]:
    """Await ``future`` without ever cancelling it (others may be waiting for it too)."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[list[str]] = loop.create_future()

    def wake(done: Future[list[str]]) -> None:
        with suppress(RuntimeError):  # the waiter's loop has closed meanwhile
            loop.call_soon_threadsafe(_settle, waiter, done)

    future.add_done_callback(wake)
    return await waiter


class ReceiverResolver:
    """Resolves receivers' names: bounded threads, one resolution in flight per name."""

    def __init__(self, threads: int = RESOLVER_THREADS) -> None:
        self._threads = threads
        self._lock = threading.RLock()
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: dict[str, _Lookup] = {}

    def reset(self) -> None:
        """Forget the pool and what was in flight (in a forked child: its threads are gone)."""
        self._lock = threading.RLock()
        self._pool = None
        self._in_flight = {}

    def _forget(self, key: str, lookup: _Lookup) -> None:
        with self._lock:
            if self._in_flight.get(key) is lookup:
                del self._in_flight[key]

    def _join(self, host: str, port: int) -> _Lookup:
        key = host.lower()
        with self._lock:
            lookup = self._in_flight.get(key)
            if lookup is None:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        self._threads, thread_name_prefix="milepost-receiver-dns"
                    )
                lookup = _Lookup(self._pool.submit(_addresses, host, port))
                self._in_flight[key] = lookup
                # Called at once (under this re-entrant lock) if it has already finished.
                lookup.future.add_done_callback(lambda _: self._forget(key, lookup))
            lookup.waiters += 1
            return lookup

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses ``host`` resolves to, as ``socket.getaddrinfo`` gives them (its
        errors raised as they are). Cancelling this (an attempt's deadline) leaves the
        resolution to whoever else waits for it."""
        lookup = self._join(host, port)
        try:
            return await _outcome(lookup.future)
        finally:
            with self._lock:
                lookup.waiters -= 1
                if lookup.waiters == 0:
                    lookup.future.cancel()  # only takes effect if it has not started


resolver = ReceiverResolver()
os.register_at_fork(after_in_child=resolver.reset)
