"""Webhook delivery through real worker processes: a processing worker (the default queues)
and a webhooks worker (``-Q webhooks``) on one database and Redis, shared by the module.

Routing is asserted by what each worker ran (its log), not by timing: no processing worker
ever runs a delivery, so a batch is processed while deliveries hang on a receiver.
"""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from receivers import Holding, serve_holding
from sqlalchemy import delete, func
from sqlmodel import col, select
from worker_processes import CeleryProcess, RedisProcess, WorkerStack, eventually
from worker_support import at, base_time_s, write_batch

from milepost_common import tasks as names
from milepost_common.crypto import SecretBox
from milepost_common.db import unit_of_work
from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts.models import AlertType
from milepost_common.domain.devices.models import Device
from milepost_common.domain.ingest_batches.models import BatchStatus, IngestBatch
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.webhooks import signing
from milepost_common.domain.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from milepost_common.testing.plugin import clone_database, drop_database
from milepost_worker.timeutil import utcnow

pytestmark = pytest.mark.slow

IN_FLIGHT_LIMIT = 2


class Workers:
    def __init__(self, stack: WorkerStack, processing: CeleryProcess, webhooks: CeleryProcess):
        self.stack, self.processing, self.webhooks = stack, processing, webhooks

    @property
    def box(self) -> SecretBox:
        key = self.stack.settings.auth.secrets_key
        assert key is not None
        return SecretBox(key.get_secret_value())


@pytest.fixture(scope="module")
async def workers(
    template_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Workers]:
    db_url = await clone_database(template_database_url, "milepost_webhooks")
    redis = RedisProcess(tmp_path_factory.mktemp("redis"))
    redis.start()
    stack = WorkerStack(
        db_url, redis, webhooks={"timeout_s": 3, "max_in_flight_per_org": IN_FLIGHT_LIMIT}
    )
    processing = stack.worker(concurrency=1)
    webhooks = stack.worker(concurrency=3, queues=names.QUEUE_WEBHOOKS)
    try:
        assert stack.consumed_ping(60), processing.log_tail()
        assert stack.consumed_ping(60, queue=names.QUEUE_WEBHOOKS), webhooks.log_tail()
        yield Workers(stack, processing, webhooks)
    finally:
        await stack.close()
        redis.stop()
        await drop_database(db_url)


async def new_org(workers: Workers, url: str, deliveries: int = 0) -> Organization:
    """An organization with an endpoint at ``url`` and ``deliveries`` due deliveries."""
    async with unit_of_work(workers.stack.db) as session:
        org = Organization(name=f"org {uuid.uuid4().hex[:6]}")
        session.add(org)
        await session.flush()
        endpoint = WebhookEndpoint(
            org_id=org.id,
            url=url,
            secret_encrypted=workers.box.encrypt("s3cret"),
            event_types=["alert.created"],
        )
        session.add(endpoint)
        await session.flush()
        session.add_all(
            WebhookDelivery(
                org_id=org.id,
                endpoint_id=endpoint.id,
                event_id=uuid.uuid4(),
                event_type="alert.created",
                payload={"type": "alert.created"},
                next_attempt_at=utcnow(),
            )
            for _ in range(deliveries)
        )
    return org


async def delivery_ids(workers: Workers, *orgs: Organization) -> list[uuid.UUID]:
    async with unit_of_work(workers.stack.db) as session:
        found = await session.execute(
            select(col(WebhookDelivery.id))
            .where(col(WebhookDelivery.org_id).in_([o.id for o in orgs]))
            .order_by(col(WebhookDelivery.created_at))
        )
        return list(found.scalars())


async def statuses(workers: Workers, *orgs: Organization) -> dict[str, int]:
    async with unit_of_work(workers.stack.db) as session:
        rows = await session.execute(
            select(col(WebhookDelivery.status), func.count())
            .where(col(WebhookDelivery.org_id).in_([o.id for o in orgs]))
            .group_by(col(WebhookDelivery.status))
        )
        return {str(status): count for status, count in rows.all()}


async def forget(workers: Workers, *orgs: Organization) -> None:
    """Delete the organizations' deliveries: their queued tasks then find nothing to do."""
    async with unit_of_work(workers.stack.db) as session:
        await session.execute(
            delete(WebhookDelivery).where(col(WebhookDelivery.org_id).in_([o.id for o in orgs]))
        )


def ran(process: CeleryProcess, task: str) -> bool:
    """The worker received ``task`` at least once (Celery logs each task it receives)."""
    return f"Task {task}[" in process.log_path.read_text(errors="replace")


@pytest.fixture
def holding() -> Iterator[int]:
    server, port = serve_holding(hold_s=60)
    yield port
    Holding.release.set()
    server.shutdown()
    server.server_close()


async def hang_every_child(workers: Workers, orgs: list[Organization]) -> None:
    """Send the organizations' deliveries (to a holding receiver) until every webhooks child
    waits on the receiver."""
    for delivery_id in await delivery_ids(workers, *orgs):
        workers.stack.send(names.WEBHOOKS_DELIVER, str(delivery_id))

    async def hanging() -> bool:
        return sum(Holding.in_flight.values()) >= 3

    await eventually(hanging, timeout_s=20, what="every webhooks child on the receiver")


class TestRouting:
    async def test_a_batch_is_processed_while_200_deliveries_hang(
        self, workers: Workers, holding: int
    ) -> None:
        stack = workers.stack
        orgs = [await new_org(workers, f"http://127.0.0.1:{holding}/o{i}", 4) for i in range(50)]
        try:
            await hang_every_child(workers, orgs)
            async with unit_of_work(stack.db) as session:
                org = Organization(name="fleet")
                session.add(org)
                await session.flush()
                device = Device(org_id=org.id, unique_id=uuid.uuid4().hex, name="van")
                session.add(device)
                await session.flush()
                fixes = [at(t, 0, t0_s=base_time_s()) for t in range(0, 300, 10)]
                batch = await write_batch(session, device, fixes)
            stack.send(names.INGEST_BATCHES_PROCESS, str(batch.id))

            async def processed() -> bool:
                async with unit_of_work(stack.db) as session:
                    status = await session.scalar(
                        select(col(IngestBatch.status)).where(col(IngestBatch.id) == batch.id)
                    )
                return status == BatchStatus.PROCESSED

            await eventually(processed, timeout_s=15, what="the batch processed")
            still_pending = (await statuses(workers, *orgs)).get(DeliveryStatus.PENDING, 0)
        finally:
            await forget(workers, *orgs)
            Holding.release.set()

        assert still_pending >= 150  # most deliveries still waiting behind the hanging ones
        assert ran(workers.webhooks, names.WEBHOOKS_DELIVER)
        assert not ran(workers.processing, names.WEBHOOKS_DELIVER)
        assert not ran(workers.processing, names.WEBHOOKS_SWEEP)


class TestLiveness:
    async def test_a_webhooks_node_whose_every_child_waits_on_receivers_is_alive(
        self, workers: Workers, holding: int
    ) -> None:
        # The group had no probe: a ping on its queue waits behind every delivery ahead of it.
        # Its node's own queue has none, and a node whose every child is busy passes.
        orgs = [await new_org(workers, f"http://127.0.0.1:{holding}/o{i}", 4) for i in range(50)]
        try:
            await hang_every_child(workers, orgs)
            answer = workers.stack.liveness(workers.webhooks.node_name, 1)
        finally:
            await forget(workers, *orgs)
            Holding.release.set()
        assert answer.returncode == 0, answer.stderr
        assert answer.stdout.startswith(workers.webhooks.node_name)


class TestInFlightLimit:
    async def test_an_organization_never_has_more_than_its_limit_in_flight(
        self, workers: Workers
    ) -> None:
        server, port = serve_holding(hold_s=0.6)
        busy = await new_org(workers, f"http://127.0.0.1:{port}/busy", 6)
        other = await new_org(workers, f"http://127.0.0.1:{port}/other", 1)
        try:
            for delivery_id in await delivery_ids(workers, busy, other):
                workers.stack.send(names.WEBHOOKS_DELIVER, str(delivery_id))

            async def all_delivered() -> bool:
                done = await statuses(workers, busy, other)
                return done.get(DeliveryStatus.SUCCEEDED, 0) == 7

            # No sweep runs here: deferred deliveries go out as slots free.
            await eventually(all_delivered, timeout_s=30, what="every delivery")
        finally:
            Holding.release.set()
            server.shutdown()
            server.server_close()

        assert Holding.most["/busy"] == IN_FLIGHT_LIMIT
        # The other organization was not queued behind the busy one's deferred deliveries.
        assert Holding.done.index("/other") < Holding.done.count("/busy")


class FlakyReceiver(http.server.BaseHTTPRequestHandler):
    """Answers 500 twice, then 200; keeps what it received."""

    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers.items()), body))
        self.send_response(500 if len(self.received) <= 2 else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[FlakyReceiver]]]:
    FlakyReceiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyReceiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/milepost", FlakyReceiver
    server.shutdown()
    server.server_close()


class TestWebhooks:
    async def test_receiver_failing_twice_gets_the_event_on_the_third_attempt(
        self, workers: Workers, receiver: tuple[str, type[FlakyReceiver]]
    ) -> None:
        stack = workers.stack
        url, handler = receiver
        secret = "whsec-test-" + uuid.uuid4().hex
        async with unit_of_work(stack.db) as session:
            org = Organization(name="flaky")
            session.add(org)
            await session.flush()
            device = Device(org_id=org.id, unique_id=uuid.uuid4().hex, name="van")
            session.add_all(
                [
                    device,
                    AlertRule(
                        org_id=org.id,
                        name="battery",
                        type=AlertType.LOW_BATTERY,
                        params={"threshold_pct": 20},
                    ),
                    WebhookEndpoint(
                        org_id=org.id,
                        url=url,
                        secret_encrypted=workers.box.encrypt(secret),
                        event_types=["alert.created"],
                    ),
                ]
            )
            await session.flush()
            batch = await write_batch(session, device, [at(0, 0, t0_s=base_time_s(), battery=9)])
        stack.send(names.INGEST_BATCHES_PROCESS, str(batch.id))

        async def delivered() -> bool:
            stack.send(names.WEBHOOKS_SWEEP)  # what beat does every few seconds
            return (await statuses(workers, org)).get(DeliveryStatus.SUCCEEDED) == 1

        await eventually(delivered, timeout_s=40, interval_s=0.5, what="the delivery")
        async with unit_of_work(stack.db) as session:
            delivery = (
                await session.execute(
                    select(WebhookDelivery).where(col(WebhookDelivery.org_id) == org.id)
                )
            ).scalar_one()
        assert delivery.attempts == 3
        assert [a["status_code"] for a in delivery.attempt_log] == [500, 500, 200]
        assert len(handler.received) == 3
        event_ids = {headers[signing.EVENT_ID_HEADER] for headers, _ in handler.received}
        assert event_ids == {str(delivery.event_id)}
        for headers, body in handler.received:
            assert signing.verify(secret, body, headers[signing.SIGNATURE_HEADER])
            assert headers["Content-Type"] == "application/json"


class TestLogs:
    async def test_a_delivery_logs_its_endpoint_id_and_nothing_of_the_url(
        self, workers: Workers
    ) -> None:
        server, port = serve_holding(hold_s=0)
        token, key = uuid.uuid4().hex, uuid.uuid4().hex
        url = f"http://127.0.0.1:{port}/services/T000/B000/{token}?token={key}"
        org = await new_org(workers, url, 1)
        try:
            (delivery_id,) = await delivery_ids(workers, org)
            workers.stack.send(names.WEBHOOKS_DELIVER, str(delivery_id))

            async def delivered() -> bool:
                return (await statuses(workers, org)).get(DeliveryStatus.SUCCEEDED) == 1

            await eventually(delivered, timeout_s=20, what="the delivery")
            async with unit_of_work(workers.stack.db) as session:
                endpoint_id = await session.scalar(
                    select(col(WebhookEndpoint.id)).where(col(WebhookEndpoint.org_id) == org.id)
                )

            def logs() -> str:
                processes = (workers.processing, workers.webhooks)
                return "".join(p.log_path.read_text(errors="replace") for p in processes)

            async def attempt_logged() -> bool:  # written after the outcome is recorded
                return f'"endpoint_id":"{endpoint_id}"' in logs()

            await eventually(attempt_logged, timeout_s=5, what="the attempt's log line")
        finally:
            server.shutdown()
            server.server_close()

        assert token not in logs()
        assert key not in logs()
        assert "/services/T000" not in logs()
