from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from milepost_common.domain.audit.models import AuditEntry
from milepost_common.testing.factories import make_alert, make_device
from services.api.tests.api_support import Bearer, Team, rule_for

JAN1 = datetime(2026, 1, 1, tzinfo=UTC)


class TestAlerts:
    async def test_filters_are_half_open_and_acknowledge_records_who(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        rule = await rule_for(session, team)
        alerts = [
            await make_alert(session, device, JAN1 + timedelta(minutes=m), rule)
            for m in (0, 10, 20)
        ]
        window = {
            "from": (JAN1 + timedelta(minutes=10)).isoformat(),
            "to": (JAN1 + timedelta(minutes=20)).isoformat(),
        }
        listed = await client.get("/api/v1/alerts", params=window, headers=bearer(team.viewer))
        ack = await client.post(
            f"/api/v1/alerts/{alerts[0].id}/acknowledge", headers=bearer(team.manager)
        )
        ack_again = await client.post(
            f"/api/v1/alerts/{alerts[0].id}/acknowledge", headers=bearer(team.owner)
        )
        open_only = await client.get(
            "/api/v1/alerts", params={"acknowledged": "false"}, headers=bearer(team.viewer)
        )

        assert [a["id"] for a in listed.json()["items"]] == [str(alerts[1].id)]
        assert ack.json()["acknowledged_by"] == str(team.manager.id)
        assert ack.json()["acknowledged_at"] is not None
        assert ack_again.json()["acknowledged_by"] == str(team.manager.id)
        assert [a["id"] for a in open_only.json()["items"]] == [str(a.id) for a in alerts[1:]]
        entries = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "alerts.acknowledge")
            )
        ).all()
        assert len(entries) == 1
