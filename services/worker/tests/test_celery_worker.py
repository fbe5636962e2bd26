"""Through a real prefork worker process: ping, a batch, metrics, beat's heartbeat and each
node's liveness probe. One worker (and its database and Redis) is shared by the module's tests.
Webhook deliveries have a worker group of their own: ``test_webhooks_worker.py``."""

from __future__ import annotations

import asyncio
import os
import signal
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from redis import Redis as SyncRedis
from sqlalchemy import func
from sqlmodel import col, select
from worker_processes import CeleryProcess, RedisProcess, WorkerStack, eventually
from worker_support import at, base_time_s, write_batch

from milepost_common import tasks as names
from milepost_common.db import unit_of_work
from milepost_common.domain.devices.models import Device
from milepost_common.domain.ingest_batches.models import BatchStatus, IngestBatch
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.trips.models import Trip
from milepost_common.tasks import WORKER_HEARTBEAT_PREFIX
from milepost_common.testing.plugin import clone_database, drop_database

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def stack(
    template_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[WorkerStack]:
    db_url = await clone_database(template_database_url, "milepost_worker")
    redis = RedisProcess(tmp_path_factory.mktemp("redis"))
    redis.start()
    stack = WorkerStack(db_url, redis)
    worker = stack.worker()
    try:
        assert stack.consumed_ping(60), worker.log_tail()
        yield stack
    finally:
        await stack.close()
        redis.stop()
        await drop_database(db_url)


async def new_device(stack: WorkerStack, **fields: Any) -> Device:
    async with unit_of_work(stack.db) as session:
        org = Organization(name=f"org {uuid.uuid4().hex[:6]}")
        session.add(org)
        await session.flush()
        device = Device(org_id=org.id, unique_id=uuid.uuid4().hex, name="van", **fields)
        session.add(device)
    return device


async def batch_status(stack: WorkerStack, batch_id: uuid.UUID) -> str:
    async with unit_of_work(stack.db) as session:
        return str(
            (
                await session.execute(
                    select(col(IngestBatch.status)).where(col(IngestBatch.id) == batch_id)
                )
            ).scalar_one()
        )


class TestWorkerProcess:
    def test_ping_command_exits_zero_once_a_worker_consumed(self, stack: WorkerStack) -> None:
        answer = stack.ping(20)
        assert answer.returncode == 0, answer.stderr

    async def test_batch_processed_through_celery(self, stack: WorkerStack) -> None:
        device = await new_device(stack)
        t0 = base_time_s()
        fixes = [at(t, 0, t0_s=t0) for t in range(0, 300, 10)]
        fixes += [at(310 + 10 * i, 90.0 * (i + 1), t0_s=t0) for i in range(30)]
        fixes += [at(t, 2700.0, t0_s=t0) for t in range(610, 1000, 10)]
        async with unit_of_work(stack.db) as session:
            batch = await write_batch(session, device, fixes)
        stack.send(names.INGEST_BATCHES_PROCESS, str(batch.id))

        async def processed() -> bool:
            return await batch_status(stack, batch.id) == BatchStatus.PROCESSED

        await eventually(processed, what="the batch processed")
        async with unit_of_work(stack.db) as session:
            trips = (
                await session.execute(
                    select(func.count()).select_from(Trip).where(col(Trip.device_id) == device.id)
                )
            ).scalar_one()
        assert trips == 1
        metrics = (
            (
                await asyncio.to_thread(
                    urllib.request.urlopen,
                    f"http://127.0.0.1:{stack.metrics_port}/metrics",
                    timeout=5,
                )
            )
            .read()
            .decode()
        )
        assert 'milepost_worker_tasks_total{outcome="ok",task="ingest_batches.process"}' in metrics
        assert "milepost_worker_processing_lag_seconds_bucket" in metrics


class TestNodes:
    async def test_every_node_of_every_group_says_it_runs(self, stack: WorkerStack) -> None:
        # The node keys came from the heartbeat task, which only the nodes consuming its queue
        # ran, one of them each time: the webhooks workers never showed on the status page.
        webhooks = stack.worker(concurrency=1, queues="webhooks")
        try:
            assert stack.consumed_ping(60, queue="webhooks"), webhooks.log_tail()
            with SyncRedis.from_url(stack.redis.url) as broker:

                async def both_seen() -> bool:
                    nodes = {k.decode() for k in broker.scan_iter(WORKER_HEARTBEAT_PREFIX + "*")}
                    return {node.split("@")[0] for node in nodes} >= {
                        WORKER_HEARTBEAT_PREFIX + "test0",
                        WORKER_HEARTBEAT_PREFIX + "test1",
                    }

                await eventually(both_seen, timeout_s=10, interval_s=0.2, what="both nodes")
        finally:
            webhooks.stop()


@pytest.fixture(scope="class")
def this_hosts_node(stack: WorkerStack) -> Iterator[CeleryProcess]:
    """A node named as a Kubernetes pod's is (``celery@<host>``): the probe's default."""
    worker = stack.worker(name="celery")
    try:
        yield worker
    finally:
        worker.stop()


class TestLiveness:
    """The probe checks its own node, through the node's own queue: it used to read one
    heartbeat that beat sends through whichever node takes it, so every pod failed while
    beat was down and a stalled pod passed while another consumed."""

    def test_a_node_that_consumes_is_alive_though_beat_never_ran(
        self, stack: WorkerStack, this_hosts_node: CeleryProcess
    ) -> None:
        answer = stack.liveness(None, 60)
        assert answer.returncode == 0, answer.stderr + this_hosts_node.log_tail()
        assert f"{this_hosts_node.node_name} consumed a ping" in answer.stdout

    async def test_a_stalled_node_fails_though_others_consume(
        self, stack: WorkerStack, this_hosts_node: CeleryProcess
    ) -> None:
        stack.send(names.SYSTEM_HEARTBEAT)  # beat's heartbeat, taken by a node: the fleet lives
        assert stack.consumed_ping(30)
        assert stack.liveness(None, 60).returncode == 0  # this node consumes to begin with
        process = this_hosts_node.process
        assert process is not None
        os.kill(process.pid, signal.SIGSTOP)  # the node's main process hangs; its children idle
        try:
            await asyncio.sleep(3.5)  # three of its records missed (one a second here)
            stalled = stack.liveness(None, 1)
        finally:
            os.kill(process.pid, signal.SIGCONT)
        assert stalled.returncode == 1, stalled.stdout
        assert f"{this_hosts_node.node_name}'s main process is silent" in stalled.stderr
        # Resumed, it takes the pings left in its queue and the next one.
        assert stack.liveness(None, 60).returncode == 0


class TestBeat:
    async def test_beats_heartbeat_exports_its_gauges(self, stack: WorkerStack) -> None:
        beat = stack.beat()
        try:

            async def beaten() -> bool:
                return stack.metric("milepost_worker_heartbeat_timestamp_seconds") > 0

            async def measured() -> bool:  # the backlog, measured by the same task
                return stack.metric("milepost_worker_positions_partition_days_ahead") == 2

            await eventually(beaten, timeout_s=30, interval_s=0.2, what="a heartbeat")
            # Beat keeps sending heartbeats meanwhile: a first measurement a loaded machine
            # let time out is taken again by the next one, as in production.
            await eventually(measured, timeout_s=30, interval_s=0.2, what="the backlog gauges")
        finally:
            beat.stop()
        # Admin's system status lists each node from its own record on the broker Redis.
        with SyncRedis.from_url(stack.redis.url) as broker:
            nodes = list(broker.scan_iter(match=WORKER_HEARTBEAT_PREFIX + "*"))
            assert nodes
            assert orjson.loads(broker.get(nodes[0]))["at"] > 0
