"""Webhook deliveries: list, and retry a dead one."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from admin_support import Staff, audit_entries
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.webhooks.models import DeliveryStatus, WebhookEndpoint
from milepost_common.testing.factories import make_organization, make_webhook_delivery


class TestRetryDelivery:
    async def test_dead_delivery_is_due_again(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        delivery = await make_webhook_delivery(
            session, await make_organization(session), DeliveryStatus.DEAD
        )
        before = datetime.now(UTC)

        response = await client.post(
            f"/admin/v1/webhook-deliveries/{delivery.id}/retry", headers=staff.operator_auth
        )

        assert response.status_code == 202
        assert response.json() == {"id": str(delivery.id), "status": "pending"}
        await session.refresh(delivery)
        assert delivery.next_attempt_at is not None
        assert delivery.next_attempt_at >= before
        [entry] = await audit_entries(session, "webhook_deliveries.retry")
        assert entry.target_id == str(delivery.id)

    async def test_only_dead_ones(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        delivery = await make_webhook_delivery(
            session, await make_organization(session), DeliveryStatus.SUCCEEDED
        )

        response = await client.post(
            f"/admin/v1/webhook-deliveries/{delivery.id}/retry", headers=staff.operator_auth
        )

        assert response.status_code == 409

    async def test_not_while_its_endpoint_is_disabled(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        # A retry the worker would give up unsent: refused, not answered 202 for nothing.
        delivery = await make_webhook_delivery(
            session, await make_organization(session), DeliveryStatus.DEAD
        )
        endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id)
        assert endpoint is not None
        endpoint.enabled, endpoint.disabled_reason = False, "receiver answered 410 Gone"
        await session.flush()

        response = await client.post(
            f"/admin/v1/webhook-deliveries/{delivery.id}/retry", headers=staff.operator_auth
        )

        assert response.status_code == 409
        assert "disabled" in response.json()["error"]["message"]
        await session.refresh(delivery)
        assert delivery.status == DeliveryStatus.DEAD
        assert await audit_entries(session, "webhook_deliveries.retry") == []


class TestListDeliveries:
    async def test_filter_by_status(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        dead = await make_webhook_delivery(session, org, DeliveryStatus.DEAD)
        await make_webhook_delivery(session, org, DeliveryStatus.PENDING)

        response = await client.get(
            "/admin/v1/webhook-deliveries",
            params={"org_id": str(org.id), "status": "dead"},
            headers=staff.support_auth,
        )

        assert [d["id"] for d in response.json()["items"]] == [str(dead.id)]
