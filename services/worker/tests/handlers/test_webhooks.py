"""Webhook attempts in-process: success, backoff scheduled in the database, 410, refusal."""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain.webhooks import signing
from milepost_common.domain.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from milepost_common.testing.factories import make_organization
from milepost_worker.handlers.webhooks import deliver, due_deliveries
from milepost_worker.runtime import WorkerContext
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
    org = await make_organization(session)
    endpoint = WebhookEndpoint(
        org_id=org.id,
        url=url,
        secret_encrypted=ctx.box.encrypt(secret),
        event_types=["alert.created"],
    )
    session.add(endpoint)
    await session.flush()
    row = WebhookDelivery(
        org_id=org.id,
        endpoint_id=endpoint.id,
        event_id=uuid.uuid4(),
        event_type="alert.created",
        payload={"id": "x", "type": "alert.created"},
        next_attempt_at=utcnow(),
    )
    session.add(row)
    await session.commit()
    return row


async def reload(session: AsyncSession, row: WebhookDelivery) -> WebhookDelivery:
    found = await session.get(WebhookDelivery, row.id, populate_existing=True)
    assert found is not None
    return found


class TestDeliver:
    async def test_signed_post_succeeds(
        self, ctx: WorkerContext, session: AsyncSession, receiver: str
    ) -> None:
        row = await pending(session, ctx, receiver)
        assert await deliver(ctx, row.id) == DeliveryStatus.SUCCEEDED
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
        assert await deliver(ctx, row.id) == DeliveryStatus.PENDING
        failed = await reload(session, row)
        assert failed.attempts == 1
        assert failed.attempt_log[0]["status_code"] == 503
        assert failed.next_attempt_at is not None
        # First retry after base (1 s in these settings) x jitter in [0.5, 1].
        assert before + timedelta(seconds=0.4) < failed.next_attempt_at
        assert failed.next_attempt_at < utcnow() + timedelta(seconds=1.1)
        assert await deliver(ctx, row.id) is None  # not due yet: nothing sent
        assert len(Receiver.received) == 1

    async def test_gone_disables_the_endpoint(
        self, ctx: WorkerContext, session: AsyncSession, receiver: str
    ) -> None:
        Receiver.status = 410
        row = await pending(session, ctx, receiver)
        assert await deliver(ctx, row.id) == DeliveryStatus.DEAD
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
            statuses.append(await deliver(ctx, row.id))
        assert statuses[-1] == DeliveryStatus.DEAD
        assert set(statuses[:-1]) == {DeliveryStatus.PENDING}
        dead = await reload(session, row)
        assert len(dead.attempt_log) == ctx.settings.worker.webhook_max_attempts

    async def test_loopback_refused_unless_allowed(
        self, ctx: WorkerContext, session: AsyncSession, receiver: str
    ) -> None:
        ctx.settings.worker.webhook_allow_private = False
        try:
            row = await pending(session, ctx, receiver)
            assert await deliver(ctx, row.id) == DeliveryStatus.PENDING
        finally:
            ctx.settings.worker.webhook_allow_private = True
        refused = await reload(session, row)
        assert refused.last_error is not None
        assert refused.last_error.startswith("refused")
        assert Receiver.received == []


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
