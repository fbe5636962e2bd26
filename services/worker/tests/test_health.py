"""One node's liveness as its probe judges it (``health.check_node``), on a real Redis: the
record a node's main process writes (``NodeHeartbeat``) and a ping sent to the node's own
queue, which no worker consumes here (the real nodes: ``test_celery_worker.py``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from redis import Redis

from milepost_common.tasks import WORKER_HEARTBEAT_PREFIX, Publisher
from milepost_worker import health
from milepost_worker.health import NodeHeartbeat
from milepost_worker.settings import WorkerSettings

LONGEST_TASK_S = 30.0


@dataclass
class Probe:
    settings: WorkerSettings
    publisher: Publisher
    cache: Redis
    broker: Redis

    def check(self, node: str) -> tuple[bool, str]:
        return health.check_node(
            self.publisher,
            self.cache,
            self.broker,
            node,
            timeout_s=0.3,
            longest_task_s=LONGEST_TASK_S,
            silent_after_s=3.0,
        )

    def heartbeat(self, node: str, *, busy: bool) -> NodeHeartbeat:
        """The record a running node writes, from the class the node runs."""
        beat = NodeHeartbeat(self.settings.redis.url, node, 60, 2, busy=lambda: busy)
        beat.start()
        return beat

    def record(self, node: str, **fields: Any) -> None:
        self.broker.set(WORKER_HEARTBEAT_PREFIX + node, orjson.dumps(fields))


@pytest.fixture
def probe(settings_factory: Callable[..., Any]) -> Iterator[Probe]:
    settings: WorkerSettings = settings_factory(WorkerSettings)
    publisher = Publisher(settings.redis, settings.celery)
    with Redis.from_url(settings.redis.cache_url) as cache, Redis.from_url(settings.redis.url) as b:
        yield Probe(settings, publisher, cache, b)
    publisher.close()


def a_node() -> str:
    return f"probe-{uuid.uuid4().hex[:8]}@test"


class TestCheckNode:
    def test_a_free_child_that_takes_no_ping_is_a_stalled_node(self, probe: Probe) -> None:
        node = a_node()
        beat = probe.heartbeat(node, busy=False)  # its main process runs, its consumer does not
        try:
            alive, line = probe.check(node)
        finally:
            beat.stop()
        assert not alive
        assert line.startswith(f"{node} consumed no ping within 0.3s")
        # The ping waits in the node's own queue, for the node alone.
        assert probe.broker.llen(f"{node}.dq2") == 1

    def test_every_child_busy_and_taking_tasks_is_alive(self, probe: Probe) -> None:
        node = a_node()
        beat = probe.heartbeat(node, busy=True)
        try:
            alive, line = probe.check(node)
        finally:
            beat.stop()
        assert alive, line
        assert "runs a task in every child" in line

    def test_busy_longer_than_any_task_may_run_is_stalled(self, probe: Probe) -> None:
        node = a_node()
        now = time.time()
        probe.record(node, at=now, received_at=now - LONGEST_TASK_S - 5, busy=True)
        alive, line = probe.check(node)
        assert not alive
        assert "(last task 35s ago)" in line

    def test_a_silent_main_process_is_stalled(self, probe: Probe) -> None:
        node = a_node()
        now = time.time()
        probe.record(node, at=now - 10, received_at=now - 10, busy=True)
        alive, line = probe.check(node)
        assert (alive, line) == (False, f"{node}'s main process is silent (10s)")

    def test_a_node_never_seen_is_not_alive(self, probe: Probe) -> None:
        node = a_node()
        assert probe.check(node) == (
            False,
            f"{node} consumed no ping within 0.3s and has no heartbeat",
        )

    def test_a_broker_out_of_reach_passes(self, settings_factory: Callable[..., Any]) -> None:
        # Restarting the node would not bring Redis back; it reconnects by itself.
        settings: WorkerSettings = settings_factory(
            WorkerSettings, redis={"url": "redis://127.0.0.1:1/0"}
        )
        publisher = Publisher(settings.redis, settings.celery)
        try:
            with Redis.from_url(settings.redis.url) as unreachable:
                alive, line = health.check_node(
                    publisher,
                    unreachable,
                    unreachable,
                    a_node(),
                    timeout_s=0.3,
                    longest_task_s=LONGEST_TASK_S,
                    silent_after_s=3.0,
                )
        finally:
            publisher.close()
        assert alive
        assert line.startswith("broker unavailable (")
