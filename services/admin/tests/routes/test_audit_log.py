"""The audit log: append-only in the database; filters and cursor pages."""

from __future__ import annotations

import httpx
import pytest
from admin_support import Staff
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.audit import service as audit
from milepost_common.testing.factories import make_organization, principal_for


class TestAppendOnly:
    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE audit_log SET action = 'x' WHERE id = :id",
            "DELETE FROM audit_log WHERE id = :id",
        ],
    )
    async def test_database_refuses_changes(
        self, session: AsyncSession, staff: Staff, statement: str
    ) -> None:
        entry = await audit.record(session, principal_for(staff.operator), "tests.append_only")

        with pytest.raises(DBAPIError, match="append-only"):
            async with session.begin_nested():
                await session.execute(text(statement), {"id": entry.id})


class TestListAuditEntries:
    async def test_filters_and_cursor_pages(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        for n in range(3):
            await client.post(
                "/admin/v1/organizations",
                json={"name": f"Audited {n}"},
                headers=staff.operator_auth,
            )
        other = await make_organization(session)
        await client.post(
            f"/admin/v1/organizations/{other.id}/suspend", headers=staff.superadmin_auth
        )

        first = await client.get(
            "/admin/v1/audit-log",
            params={"actor_id": str(staff.operator.id), "action": "organizations.", "limit": 2},
            headers=staff.support_auth,
        )
        second = await client.get(
            "/admin/v1/audit-log",
            params={
                "actor_id": str(staff.operator.id),
                "action": "organizations.",
                "limit": 2,
                "cursor": first.json()["next_cursor"],
            },
            headers=staff.support_auth,
        )

        entries = first.json()["items"] + second.json()["items"]
        assert [e["diff"]["name"] for e in entries] == ["Audited 0", "Audited 1", "Audited 2"]
        assert second.json()["next_cursor"] is None
        by_org = await client.get(
            "/admin/v1/audit-log", params={"org_id": str(other.id)}, headers=staff.support_auth
        )
        assert [e["action"] for e in by_org.json()["items"]] == ["organizations.suspend"]
        assert by_org.json()["items"][0]["actor_label"] == staff.superadmin.email
