"""The live-event contract between the worker (publisher) and the api (stream, cache).

The worker publishes one JSON message per event on the organization's channel after the
transaction that produced it commits; the api relays them to WebSocket subscribers and drops
the organization's cached latest positions when a position event arrives.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel

LiveEventType = Literal["position", "alert"]


class LiveEvent(BaseModel):
    type: LiveEventType
    org_id: uuid.UUID
    vehicle_id: uuid.UUID
    data: dict[str, Any]


def org_channel(org_id: uuid.UUID) -> str:
    """The Redis pub/sub channel (cache DB) of one organization's live events."""
    return f"milepost:live:{org_id}"


# Every key of the api's whole-answer cache starts so: its processes ask Redis to report
# every change under it (server-assisted client-side caching).
CACHE_KEY_PREFIX = "milepost:cache:"


def latest_positions_key(org_id: uuid.UUID) -> str:
    """The cache key of an organization's latest positions (invalidated on position events)."""
    return f"{CACHE_KEY_PREFIX}latest-positions:{org_id}"
