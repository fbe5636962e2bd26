"""Webhook attempts in-process: success, backoff scheduled in the database, 410, refusal, the
attempt's deadline and answer cap, attempts cut short, a receiver's name hung in DNS, the
sweep's share per organization."""

from __future__ import annotations

import asyncio
import http.server
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from receivers import Endless, Holding, RawServer, drip, serve_holding
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select
from worker_processes import eventually

from milepost_common.domain.webhooks import delivery as webhook_delivery
from milepost_common.domain.webhooks import signing
from milepost_common.domain.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from milepost_common.testing.dns import black_holed
from milepost_common.testing.factories import make_organization, make_webhook_delivery
from milepost_worker.handlers.webhooks import deliver, due_deliveries, in_flight_slots
from milepost_worker.runtime import WorkerContext
from milepost_worker.settings import WorkerSettings
from milepost_worker.timeutil import utcnow


class Receiver(http.server.BaseHTTPRequestHandler):
    status = 200
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((dict(self.headers.items()), body))
        self.send_response(Receiver.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.status, Receiver.received = 200, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


async def pending(
    session: AsyncSession,
    ctx: WorkerContext,
    url: str,
    secret: str = "s3cret",  # noqa: S107
) -> WebhookDelivery:
    row = await make_webhook_delivery(
        session,
        await make_organization(session),
        url=url,
        secret_encrypted=ctx.box.encrypt(secret),
        payload={"id": "x", "type": "alert.created"},
        next_attempt_at=utcnow(),
    )
    await session.commit()
    return row


async def more_of(session: AsyncSession, row: WebhookDelivery, count: int) -> None:
    """``count`` more due deliveries for the endpoint (and organization) of ``row``."""
    for _ in range(count):
        session.add(
            WebhookDelivery(
                org_id=row.org_id,
                endpoint_id=row.endpoint_id,
                event_id=uuid.uuid4(),
                event_type="alert.created",
                payload={},
                next_attempt_at=utcnow(),
            )
        )
    await session.commit()


async def reload(session: AsyncSession, row: WebhookDelivery) -> WebhookDelivery:
    found = await session.get(WebhookDelivery, row.id, populate_existing=True)
    assert found is not None
    return found


def resolving_to(monkeypatch: pytest.MonkeyPatch, name: str, *addresses: str) -> None:
    """DNS (outside the system) answers ``addresses``, in that order, for ``name``."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real(host, port, *args, **kwargs)
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


class TestDeliver:
    async def test_signed_post_succeeds(
        self, ctx: WorkerContext, session: AsyncSession, receiver: str
    ) -> None:
        row = await pending(session, ctx, receiver)
        assert (await deliver(ctx, row.id)).status == DeliveryStatus.SUCCEEDED
        headers, body = Receiver.received[0]
        assert headers[signing.EVENT_ID_HEADER] == str(row.event_id)
        assert signing.verify("s3cret", body, headers[signing.SIGNATURE_HEADER])
        done = await reload(session, row)
        assert (done.attempts, done.last_response_code) == (1, 200)
        assert done.delivered_at is not None

    async def test_failure_schedules_the_next_attempt_in_the_database(
        self, ctx: WorkerContext, session: AsyncSession, receiver: str
    ) -> None:
        Receiver.status = 503
        row = await pending(session, ctx, receiver)
        before = utcnow()
        assert (await deliver(ctx, row.id)).status == DeliveryStatus.PENDING
        failed = await reload(session, row)
        assert failed.attempts == 1
        assert failed.attempt_log[0]["status_code"] == 503
        assert failed.next_attempt_at is not None
        # First retry after base (1 s in these settings) x jitter in [0.5, 1].
        assert before + timedelta(seconds=0.4) < failed.next_attempt_at
        assert failed.next_attempt_at < utcnow() + timedelta(seconds=1.1)
        assert (await deliver(ctx, row.id)).status is None  # not due yet: nothing sent
        assert len(Receiver.received) == 1

    async def test_gone_disables_the_endpoint(
        self, ctx: WorkerContext, session: AsyncSession, receiver: str
    ) -> None:
        Receiver.status = 410
        row = await pending(session, ctx, receiver)
        assert (await deliver(ctx, row.id)).status == DeliveryStatus.DEAD
        endpoint = await session.get(WebhookEndpoint, row.endpoint_id, populate_existing=True)
        assert endpoint is not None
        assert not endpoint.enabled
        assert endpoint.disabled_reason

    async def test_dead_after_the_last_attempt(
        self, ctx: WorkerContext, session: AsyncSession, receiver: str
    ) -> None:
        Receiver.status = 500
        row = await pending(session, ctx, receiver)
        statuses = []
        for _ in range(ctx.settings.worker.webhook_max_attempts):
            await session.execute(
                update(WebhookDelivery)
                .where(col(WebhookDelivery.id) == row.id)
                .values(next_attempt_at=utcnow())
            )
            await session.commit()
            statuses.append((await deliver(ctx, row.id)).status)
        assert statuses[-1] == DeliveryStatus.DEAD
        assert set(statuses[:-1]) == {DeliveryStatus.PENDING}
        dead = await reload(session, row)
        assert len(dead.attempt_log) == ctx.settings.worker.webhook_max_attempts

    async def test_a_410_gives_up_the_endpoints_other_deliveries_without_an_attempt(
        self, ctx: WorkerContext, session: AsyncSession, receiver: str
    ) -> None:
        Receiver.status = 410
        row = await pending(session, ctx, receiver)
        await more_of(session, row, 1)
        [other] = (
            await session.scalars(
                select(WebhookDelivery.id).where(col(WebhookDelivery.id) != row.id)
            )
        ).all()

        first, second = await deliver(ctx, row.id), await deliver(ctx, other)

        assert (first.status, second.status) == (DeliveryStatus.DEAD, DeliveryStatus.DEAD)
        assert len(Receiver.received) == 1
        given_up = await session.get(WebhookDelivery, other, populate_existing=True)
        assert given_up is not None
        assert (given_up.attempts, given_up.attempt_log) == (0, [])
        assert given_up.last_error == "endpoint disabled"

    async def test_a_duplicate_task_leaves_the_slot_of_the_attempt_in_flight(
        self, ctx: WorkerContext, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Duplicate tasks of one delivery are routine (the sweep, a finishing task's next
        # ids); one that read the delivery due just before the other claimed it freed the
        # organization's slot of the attempt still in flight.
        server, port = serve_holding(hold_s=30)
        row = await pending(session, ctx, f"http://127.0.0.1:{port}/hook")
        slots = in_flight_slots(ctx)
        seen_due = await webhook_delivery.find_due(session, row.id, utcnow())

        async def held() -> bool:
            return Holding.in_flight.get("/hook", 0) == 1

        in_flight = asyncio.create_task(deliver(ctx, row.id))
        try:
            await eventually(held, timeout_s=5, interval_s=0.02, what="the attempt sent")

            async def due_as_seen(*args: Any) -> Any:
                return seen_due

            monkeypatch.setattr(webhook_delivery, "find_due", due_as_seen)
            duplicate = await deliver(ctx, row.id)
            monkeypatch.undo()

            assert duplicate.status is None
            assert await slots.holders(str(row.org_id)) == 1
        finally:
            Holding.release.set()
            await in_flight
            server.shutdown()
            server.server_close()

    async def test_loopback_refused_unless_allowed(
        self, ctx: WorkerContext, session: AsyncSession, receiver: str
    ) -> None:
        ctx.settings.webhooks.allow_private = False
        try:
            row = await pending(session, ctx, receiver)
            assert (await deliver(ctx, row.id)).status == DeliveryStatus.PENDING
        finally:
            ctx.settings.webhooks.allow_private = True
        refused = await reload(session, row)
        assert refused.last_error is not None
        assert refused.last_error.startswith("refused")
        assert Receiver.received == []

    async def test_a_name_whose_first_address_refuses_is_reached_at_the_next(
        self,
        ctx: WorkerContext,
        session: AsyncSession,
        receiver: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # DNS is outside the system: the receiver's name has an AAAA record whose service
        # is down (nothing listens on ::1) before the A record that answers.
        port = urlsplit(receiver).port
        resolving_to(monkeypatch, "hooks.test", "::1", "127.0.0.1")
        row = await pending(session, ctx, f"http://hooks.test:{port}/hook")

        assert (await deliver(ctx, row.id)).status == DeliveryStatus.SUCCEEDED
        delivered = await reload(session, row)
        assert (delivered.attempts, delivered.last_error) == (1, None)
        headers, _ = Receiver.received[0]
        assert headers["Host"] == f"hooks.test:{port}"

    async def test_a_name_with_any_private_address_is_refused_before_any_connection(
        self,
        ctx: WorkerContext,
        session: AsyncSession,
        receiver: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # A name that resolves to a public address first and the receiver's loopback one
        # after (rebinding, or a split horizon): no address of it is dialled.
        port = urlsplit(receiver).port
        resolving_to(monkeypatch, "hooks.test", "8.8.8.8", "127.0.0.1")
        ctx.settings.webhooks.allow_private = False
        try:
            row = await pending(session, ctx, f"http://hooks.test:{port}/hook")
            assert (await deliver(ctx, row.id)).status == DeliveryStatus.PENDING
        finally:
            ctx.settings.webhooks.allow_private = True
        refused = await reload(session, row)
        assert refused.last_error == "refused: hooks.test resolves to a non-public address"
        assert Receiver.received == []

    def test_the_setting_is_the_one_the_api_reads(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("MILEPOST_WEBHOOKS__ALLOW_PRIVATE", "true")
        monkeypatch.setenv("MILEPOST_WORKER__WEBHOOK_ALLOW_PRIVATE", "false")  # the old name
        settings = WorkerSettings(env="test")
        assert settings.webhooks.allow_private is True
        assert not hasattr(settings.worker, "webhook_allow_private")


class TestAttemptLimits:
    async def test_a_receiver_dripping_its_answer_is_cut_at_the_deadline_and_recorded(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        ctx.settings.webhooks.timeout_s = 1.5
        server = RawServer(drip(seconds=30))
        try:
            row = await pending(session, ctx, f"http://127.0.0.1:{server.port}/hook")
            started = time.monotonic()
            async with asyncio.timeout(10):  # without the deadline: 30 s of drip
                outcome = await deliver(ctx, row.id)
            elapsed = time.monotonic() - started
        finally:
            server.close()
            ctx.settings.webhooks.timeout_s = 10.0
        assert outcome.status == DeliveryStatus.PENDING
        assert 1.4 < elapsed < 3.0
        recorded = await reload(session, row)
        assert recorded.attempts == 1
        assert recorded.last_error is not None
        assert recorded.last_error.startswith("timeout")
        assert recorded.attempt_log[0]["error"] == recorded.last_error

    async def test_an_endless_answer_is_read_up_to_the_cap_only(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        ctx.settings.webhooks.timeout_s = 3.0
        endless = Endless()
        server = RawServer(endless)
        try:
            row = await pending(session, ctx, f"http://127.0.0.1:{server.port}/hook")
            started = time.monotonic()
            outcome = await deliver(ctx, row.id)
            elapsed = time.monotonic() - started
        finally:
            server.close()
            ctx.settings.webhooks.timeout_s = 10.0
        # Read 64 KiB and hung up: delivered at once, not cut at the deadline mid-body.
        assert outcome.status == DeliveryStatus.SUCCEEDED
        assert elapsed < 2.0
        # What the server got into the socket before it filled: kernel buffers, not the body.
        assert endless.sent < 16 * 1024 * 1024

    async def test_attempts_cut_short_still_count_until_the_delivery_is_dead(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        server, port = serve_holding(hold_s=10)

        async def held() -> bool:
            return Holding.in_flight.get("/hook", 0) == 1

        async def answered() -> bool:
            return Holding.in_flight["/hook"] == 0

        ctx.settings.worker.webhook_max_attempts = 3
        try:
            row = await pending(session, ctx, f"http://127.0.0.1:{port}/hook")
            for sent in range(1, 4):
                # What a soft time limit or a shutdown does to a running attempt.
                attempt = asyncio.create_task(deliver(ctx, row.id))
                await eventually(held, timeout_s=5, interval_s=0.02, what="the attempt held")
                attempt.cancel()
                with suppress(asyncio.CancelledError):
                    await attempt
                assert (await reload(session, row)).attempts == sent
                await session.execute(
                    update(WebhookDelivery)
                    .where(col(WebhookDelivery.id) == row.id)
                    .values(next_attempt_at=utcnow())  # its claim ran out: due again
                )
                await session.commit()
                Holding.release.set()
                await eventually(answered, timeout_s=5, interval_s=0.02, what="the answer")
                Holding.release.clear()
            assert (await deliver(ctx, row.id)).status == DeliveryStatus.DEAD
        finally:
            ctx.settings.worker.webhook_max_attempts = 8
            Holding.release.set()
            server.shutdown()
            server.server_close()
        dead = await reload(session, row)
        assert dead.attempts == 3
        assert [e["error"] for e in dead.attempt_log] == [webhook_delivery.INTERRUPTED] * 3
        assert len(Holding.done) == 3


class TestReceiverNames:
    async def test_a_name_hung_in_dns_delays_no_later_delivery_of_the_child(
        self, ctx: WorkerContext, session: AsyncSession, receiver: str
    ) -> None:
        # One attempt after another, as a prefork child runs them, each cut at its deadline
        # while the name is still resolving; more of them than the event loop's default
        # executor has threads (min(32, cpus + 4)).
        hung_name = f"hung-{uuid.uuid4().hex[:8]}.receiver.test"
        port = receiver.split(":")[2].split("/")[0]
        tries = min(32, (os.cpu_count() or 1) + 4)
        hung = [
            await pending(session, ctx, f"http://{hung_name}:{port}/hook") for _ in range(tries)
        ]
        other = await pending(session, ctx, receiver)
        try:
            with black_holed(hung_name):
                ctx.settings.webhooks.timeout_s = 0.5
                outcomes = [(await deliver(ctx, row.id)).status for row in hung]
                ctx.settings.webhooks.timeout_s = 3.0
                started = time.monotonic()
                delivered = await deliver(ctx, other.id)
                elapsed = time.monotonic() - started
        finally:
            ctx.settings.webhooks.timeout_s = 10.0

        assert delivered.status == DeliveryStatus.SUCCEEDED
        assert elapsed < 2.0
        assert set(outcomes) == {DeliveryStatus.PENDING}
        errors = {(await reload(session, row)).last_error for row in hung}
        assert errors == {"timeout: no complete answer within 0.5 s"}


class TestSweep:
    async def test_due_pending_deliveries_are_found(
        self, ctx: WorkerContext, session: AsyncSession, receiver: str
    ) -> None:
        row = await pending(session, ctx, receiver)
        assert row.id in await due_deliveries(ctx)
        await deliver(ctx, row.id)
        assert row.id not in await due_deliveries(ctx)
        assert (
            await session.execute(
                select(WebhookDelivery.status).where(col(WebhookDelivery.id) == row.id)
            )
        ).scalar_one() == DeliveryStatus.SUCCEEDED

    async def test_sends_at_most_the_in_flight_limit_of_each_organization(
        self, ctx: WorkerContext, session: AsyncSession, receiver: str
    ) -> None:
        busy = await pending(session, ctx, receiver)
        await more_of(session, busy, 5)
        quiet = await pending(session, ctx, receiver)
        ctx.settings.webhooks.max_in_flight_per_org = 2
        try:
            due = await due_deliveries(ctx)
        finally:
            ctx.settings.webhooks.max_in_flight_per_org = 4
        orgs = (
            await session.execute(
                select(WebhookDelivery.org_id).where(col(WebhookDelivery.id).in_(due))
            )
        ).scalars()
        assert sorted(orgs, key=lambda o: o == quiet.org_id) == [busy.org_id] * 2 + [quiet.org_id]
