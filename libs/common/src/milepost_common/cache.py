"""The one in-process cache with a time to live, for answers a few seconds stale is fine.

Every app process keeps a few: resolved principals and access tokens, an organization's
ingest filters, its devices by ``unique_id``, the storable partition window. cachetools'
``TTLCache`` would do, but it is not among the locked dependencies, and what is needed here
is a dozen lines: a per-entry expiry (a token's own may be shorter), nothing cached when the
time to live is zero (tests, and settings that turn a cache off), and a bound that starts
over rather than tracking recency (the entries are cheap to load again).

Not thread-safe, and needs no lock: each cache belongs to one event loop, and ``get`` and
``put`` never await, so no other task runs between a check and its write.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _LoaderGone(Exception):
    """The request loading a value was cancelled (its client left): load it again."""


class SingleFlight(Generic[K, V]):
    """One load per key at a time: concurrent callers for a key wait for the load in flight
    and get its value or its error, instead of all loading at once (a stampede on the
    database when a busy key expires). When the loading caller is cancelled (its client
    left), a waiter loads in its place."""

    __slots__ = ("_loading",)

    def __init__(self) -> None:
        self._loading: dict[K, asyncio.Future[V]] = {}

    async def run(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        pending = self._loading.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except _LoaderGone:
                return await self.run(key, load)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except BaseException as exc:
            future.set_exception(_LoaderGone() if isinstance(exc, asyncio.CancelledError) else exc)
            future.exception()  # consumed: nobody may be waiting
            raise
        else:
            future.set_result(value)
            return value
        finally:
            del self._loading[key]


class TtlCache(Generic[K, V]):
    """Key → value for ``ttl_s`` seconds each (``ttl_s <= 0``: nothing is kept). Once it
    holds ``max_entries`` it is emptied before the next new key. A value of None is never
    served from the cache: ``get`` answers None for a miss."""

    __slots__ = ("_data", "_loading", "_max", "ttl_s")

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self._max = max_entries
        self._data: dict[K, tuple[float, V]] = {}
        self._loading: SingleFlight[K, V] = SingleFlight()

    def get(self, key: K) -> V | None:
        """The value kept for ``key``, None when there is none or it has expired."""
        hit = self._data.get(key)
        if hit is None or hit[0] <= time.monotonic():
            return None
        return hit[1]

    def put(self, key: K, value: V, ttl_s: float | None = None) -> None:
        """Keep ``value`` for ``ttl_s`` seconds, at most the cache's own (default: that)."""
        ttl = self.ttl_s if ttl_s is None else min(ttl_s, self.ttl_s)
        if ttl <= 0:
            return
        if len(self._data) >= self._max and key not in self._data:
            self._data.clear()
        self._data[key] = (time.monotonic() + ttl, value)

    async def get_or_load(
        self,
        key: K,
        load: Callable[[], Awaitable[V]],
        *,
        ttl_of: Callable[[V], float | None] | None = None,
    ) -> V:
        """The value kept for ``key``, else ``load()``'s, then kept (errors are not) for
        ``ttl_of(value)`` seconds when given (at most the cache's own). One load per key at
        a time: concurrent misses wait for it, and get its value or its error, instead of
        all loading at once when a busy key expires (a stampede on the database)."""
        value = self.get(key)
        if value is not None:
            return value

        async def load_and_keep() -> V:
            loaded = await load()
            self.put(key, loaded, ttl_of(loaded) if ttl_of is not None else None)
            return loaded

        return await self._loading.run(key, load_and_keep)

    def clear(self) -> None:
        """Forget everything: the next ``get`` of any key misses."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
