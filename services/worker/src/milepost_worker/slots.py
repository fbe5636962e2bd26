"""At most ``limit`` holders per key across every worker process and host.

One Redis sorted set per key: members are the holders, scores the end of their lease (the
Redis server's clock, so hosts need not agree). Expired leases are dropped on every acquire,
so a holder that died without releasing frees its slot when its lease runs out.
"""

from __future__ import annotations

from redis.asyncio import Redis

# KEYS[1] the key's set; ARGV: limit, lease in ms, holder. 1 when the holder has a slot.
_ACQUIRE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZSCORE', KEYS[1], ARGV[3])
    or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
return 0
"""


class Slots:
    """A counting semaphore with leases, shared through Redis."""

    def __init__(self, redis: Redis, prefix: str, limit: int, lease_s: float) -> None:
        self._redis = redis
        self._prefix = prefix
        self._limit = limit
        self._lease_ms = max(1, round(lease_s * 1000))
        self._acquire = redis.register_script(_ACQUIRE)

    async def acquire(self, key: str, holder: str) -> bool:
        """Take a slot of ``key`` for ``holder`` (again, if it holds one: the lease restarts)."""
        taken = await self._acquire(
            keys=[self._prefix + key], args=[self._limit, self._lease_ms, holder]
        )
        return bool(taken)

    async def release(self, key: str, holder: str) -> None:
        await self._redis.zrem(self._prefix + key, holder)

    async def holders(self, key: str) -> int:
        """Holders with a live or expired lease (an expired one goes at the next acquire)."""
        return int(await self._redis.zcard(self._prefix + key))
