"""The worker's health checks, light enough for a probe process to import.

* ping: send ``system.ping`` with a nonce; the worker that consumes it sets
  ``milepost:worker:ping:<nonce>`` in the cache Redis. Proves a worker consumes right now.
* liveness: beat sends ``system.heartbeat`` through the workers every
  ``MILEPOST_WORKER__HEARTBEAT_INTERVAL_S``; the consuming worker sets ``milepost:worker:heartbeat``
  in the cache Redis to ``{"at": unix seconds, "hostname": ..., "queues": {queue: depth}}``.
  A stale key means no worker consumed beat's tasks lately (e.g. the known Celery stall after
  a broker reconnect). Admin's system status may read the same key.
* node heartbeat: each worker node's main process sets ``WORKER_HEARTBEAT_PREFIX + <node>`` in
  the broker Redis every ``heartbeat_interval_s`` (``NodeHeartbeat``): admin's system status
  lists every node of every group from them, the webhooks workers (which consume no beat
  task) included.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

import orjson
from redis import Redis
from redis.exceptions import RedisError

from milepost_common import tasks as names

HEARTBEAT_KEY = "milepost:worker:heartbeat"
PING_KEY_PREFIX = "milepost:worker:ping:"
# A node silent this long disappears from the status page instead of showing as stale.
NODE_HEARTBEAT_TTL_S = 24 * 3600


class NodeHeartbeat:
    """A thread of a worker node's main process that says, every ``interval_s``, that the
    node runs: from the node itself, not from a task, which only the nodes consuming its
    queue would run (and only one of them each time)."""

    def __init__(self, broker_url: str, node: str, interval_s: float, timeout_s: float) -> None:
        self._broker = Redis.from_url(broker_url, socket_timeout=timeout_s)
        self._key = names.WORKER_HEARTBEAT_PREFIX + node
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="node-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=self._interval_s)
        self._broker.close()

    def _run(self) -> None:
        while True:
            # Redis away: the status page shows the node stale meanwhile.
            with contextlib.suppress(RedisError):
                self._broker.set(
                    self._key, orjson.dumps({"at": time.time()}), ex=NODE_HEARTBEAT_TTL_S
                )
            if self._stopped.wait(self._interval_s):
                return


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
