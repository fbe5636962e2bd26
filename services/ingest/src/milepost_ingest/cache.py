"""A small per-process cache with a time to live, for values a few seconds stale is fine."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self._max = max_entries
        self._data: dict[K, tuple[float, V]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value, or ``load()``'s (kept for ``ttl_s``; errors are not cached)."""
        hit = self._data.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        value = await load()
        if self.ttl_s > 0:
            if len(self._data) >= self._max:
                self._data.clear()
            self._data[key] = (now + self.ttl_s, value)
        return value

    def clear(self) -> None:
        self._data.clear()
