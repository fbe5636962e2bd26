"""The worker's health checks, light enough for a probe process to import.

* ping: send ``system.ping`` with a nonce; the worker that consumes it sets
  ``milepost:worker:ping:<nonce>`` in the cache Redis. Proves a worker consumes right now.
* liveness: beat sends ``system.heartbeat`` through the workers every
  ``MILEPOST_WORKER__HEARTBEAT_INTERVAL_S``; the consuming worker sets ``milepost:worker:heartbeat``
  in the cache Redis to ``{"at": unix seconds, "hostname": ..., "queues": {queue: depth}}``.
  A stale key means no worker consumed beat's tasks lately (e.g. the known Celery stall after
  a broker reconnect). Admin's system status may read the same key.
"""

from __future__ import annotations

import time
import uuid

import orjson
from redis import Redis
from redis.exceptions import RedisError

from milepost_common import tasks as names

HEARTBEAT_KEY = "milepost:worker:heartbeat"
PING_KEY_PREFIX = "milepost:worker:ping:"


def check_liveness(cache: Redis, max_age_s: float) -> tuple[bool, str]:
    """(alive, one line) from the heartbeat key's age."""
    try:
        raw = cache.get(HEARTBEAT_KEY)
    except RedisError as exc:
        return False, f"redis unavailable ({type(exc).__name__})"
    if not isinstance(raw, bytes | str):
        return False, "no heartbeat yet"
    age = time.time() - float(orjson.loads(raw)["at"])
    if age > max_age_s:
        return False, f"heartbeat is {age:.0f}s old"
    return True, f"worker alive (heartbeat {age:.1f}s ago)"


def send_ping(
    publisher: names.Publisher, cache: Redis, timeout_s: float, *, queue: str | None = None
) -> tuple[bool, str]:
    """(answered, one line): a worker consumed a ``system.ping`` sent now (to ``queue``, else
    the ping's own) within the timeout."""
    nonce = uuid.uuid4().hex
    deadline = time.monotonic() + timeout_s
    try:
        publisher.send_blocking(names.SYSTEM_PING, nonce, queue=queue)
    except Exception as exc:  # noqa: BLE001 - reported as one line
        return False, f"broker unavailable ({type(exc).__name__})"
    while time.monotonic() < deadline:
        try:
            if cache.get(PING_KEY_PREFIX + nonce) is not None:
                cache.delete(PING_KEY_PREFIX + nonce)
                return True, "worker consumed a ping"
        except RedisError:
            pass
        time.sleep(0.05)
    return False, f"no worker answered within {timeout_s:g}s"
