"""Live events on the cache Redis, published after the transaction that produced them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from milepost_common.live import LiveEvent, latest_positions_key, org_channel
from milepost_common.logging import get_logger

log = get_logger("milepost.worker.live")


async def publish(cache: Redis, events: Sequence[LiveEvent]) -> bool:
    """PUBLISH each event on its organization's channel and drop the latest-positions cache
    of organizations with position events. Best effort: False (logged) if Redis is down."""
    if not events:
        return True
    stale: set[uuid.UUID] = {e.org_id for e in events if e.type == "position"}
    try:
        async with cache.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.publish(org_channel(event.org_id), event.model_dump_json())
            for org_id in stale:
                pipe.delete(latest_positions_key(org_id))
            await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("live_publish_failed", events=len(events), error=type(exc).__name__)
        return False
    return True
