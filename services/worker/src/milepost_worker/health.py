"""The worker's health checks, light enough for a probe process to import.

* ping: send ``system.ping`` with a nonce; the worker that consumes it sets
  ``milepost:worker:ping:<nonce>`` in the cache Redis. Proves a worker consumes right now.
* node heartbeat: each worker node's main process sets ``WORKER_HEARTBEAT_PREFIX + <node>`` in
  the broker Redis every ``heartbeat_interval_s`` (``NodeHeartbeat``) to
  ``{"at": unix seconds, "received_at": its consumer's last task taken, "busy": every child
  running one}``: admin's system status lists every node of every group from them, the
  webhooks workers (which consume no beat task) included.
* liveness of one node (``check_node``, the Kubernetes probe): the node consumes a ping sent
  now to its own queue (Celery's ``worker_direct``), or, every child busy, its consumer took
  a task lately. Nothing fleet-wide: a node stalled after a broker reconnect fails although
  others consume, and a beat that is down, or a backlog in the shared queues, restarts no
  node (the heartbeat gauges beat's task exports feed the alerts instead).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable

import orjson
from celery.utils.nodenames import worker_direct
from redis import Redis
from redis.exceptions import RedisError

from milepost_common import tasks as names

PING_KEY_PREFIX = "milepost:worker:ping:"
# A node silent this long disappears from the status page instead of showing as stale.
NODE_HEARTBEAT_TTL_S = 24 * 3600


class NodeHeartbeat:
    """A thread of a worker node's main process that says, every ``interval_s``, that the
    node runs, when its consumer last took a task and whether every child is busy: from the
    node itself, not from a task, which only the nodes consuming its queue would run (and
    only one of them each time)."""

    def __init__(
        self,
        broker_url: str,
        node: str,
        interval_s: float,
        timeout_s: float,
        busy: Callable[[], bool],
    ) -> None:
        self._broker = Redis.from_url(broker_url, socket_timeout=timeout_s)
        self._key = names.WORKER_HEARTBEAT_PREFIX + node
        self._interval_s = interval_s
        self._busy = busy
        self._received_at = time.time()  # starting counts as taking work
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="node-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def task_received(self) -> None:
        """The consumer took a task from the broker (called in the main process)."""
        self._received_at = time.time()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=self._interval_s)
        self._broker.close()

    def _run(self) -> None:
        while True:
            # Redis away: the status page shows the node stale meanwhile.
            with contextlib.suppress(RedisError):
                record = {"at": time.time(), "received_at": self._received_at, "busy": self._busy()}
                self._broker.set(self._key, orjson.dumps(record), ex=NODE_HEARTBEAT_TTL_S)
            if self._stopped.wait(self._interval_s):
                return


def check_node(
    publisher: names.Publisher,
    cache: Redis,
    broker: Redis,
    node: str,
    *,
    timeout_s: float,
    longest_task_s: float,
    silent_after_s: float,
) -> tuple[bool, str]:
    """(alive, one line) for one worker node, as its liveness probe sees it.

    Alive when the node consumes a ping sent now to its own queue within ``timeout_s``, or,
    while every child runs a task, its consumer took one within ``longest_task_s`` (no task
    holds a child longer: its hard time limit kills it). A broker the probe cannot reach
    passes: the worker reconnects by itself, and restarting it would not bring Redis back.
    """
    nonce = uuid.uuid4().hex
    try:
        publisher.send_blocking(names.SYSTEM_PING, nonce, queue=worker_direct(node))
    except Exception as exc:  # noqa: BLE001 - reported as one line
        return True, f"broker unavailable ({type(exc).__name__}): not this node's to fix"
    if _answered(cache, nonce, time.monotonic() + timeout_s):
        return True, f"{node} consumed a ping"
    try:
        raw = broker.get(names.WORKER_HEARTBEAT_PREFIX + node)
    except RedisError as exc:
        return True, f"broker unavailable ({type(exc).__name__}): not this node's to fix"
    if not isinstance(raw, bytes | str):
        return False, f"{node} consumed no ping within {timeout_s:g}s and has no heartbeat"
    record = orjson.loads(raw)
    now = time.time()
    if now - float(record["at"]) > silent_after_s:
        return False, f"{node}'s main process is silent ({now - record['at']:.0f}s)"
    taken_s = now - float(record.get("received_at", 0))
    if record.get("busy") and taken_s <= longest_task_s:
        return True, f"{node} runs a task in every child (last taken {taken_s:.0f}s ago)"
    return False, f"{node} consumed no ping within {timeout_s:g}s (last task {taken_s:.0f}s ago)"


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
    if _answered(cache, nonce, deadline):
        return True, "worker consumed a ping"
    return False, f"no worker answered within {timeout_s:g}s"


def _answered(cache: Redis, nonce: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            if cache.get(PING_KEY_PREFIX + nonce) is not None:
                cache.delete(PING_KEY_PREFIX + nonce)
                return True
        except RedisError:
            pass
        time.sleep(0.05)
    return False
