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

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Key → value for ``ttl_s`` seconds each (``ttl_s <= 0``: nothing is kept). Once it
    holds ``max_entries`` it is emptied before the next new key. A value of None is never
    served from the cache: ``get`` answers None for a miss."""

    __slots__ = ("_data", "_max", "ttl_s")

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self._max = max_entries
        self._data: dict[K, tuple[float, V]] = {}

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

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The value kept for ``key``, else ``load()``'s, then kept (errors are not)."""
        value = self.get(key)
        if value is None:
            value = await load()
            self.put(key, value)
        return value

    def clear(self) -> None:
        """Forget everything: the next ``get`` of any key misses."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
