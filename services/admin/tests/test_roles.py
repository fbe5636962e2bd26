"""The role matrix: support reads, operator writes, superadmin manages operators."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import httpx
import pytest
from admin_support import (
    NO_SESSION_FORMS,
    Staff,
    console_as,
    console_routes,
    filled,
    json_api_changes,
    one_of_everything,
)
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.users.models import PlatformRole

# A fixed unknown id: parametrized test ids must be the same in every xdist worker.
MISSING = uuid.UUID("00000000-0000-4000-8000-00000000beef")
WRITES = [
    ("POST", "/admin/v1/organizations", {"name": "Acme"}),
    ("POST", f"/admin/v1/organizations/{MISSING}/suspend", None),
    ("POST", f"/admin/v1/organizations/{MISSING}/api-keys", {"name": "k"}),
    ("POST", f"/admin/v1/api-keys/{MISSING}/revoke", None),
    ("POST", f"/admin/v1/ingest-batches/{MISSING}/replay", None),
    ("POST", f"/admin/v1/webhook-deliveries/{MISSING}/retry", None),
]
READS = [
    "/admin/v1/organizations",
    "/admin/v1/users",
    "/admin/v1/devices",
    "/admin/v1/api-keys",
    "/admin/v1/ingest-batches",
    "/admin/v1/webhook-deliveries",
    "/admin/v1/audit-log",
    "/admin/v1/operators",
    "/admin/v1/system/status",
]


class TestRoleMatrix:
    @pytest.mark.parametrize(
        ("role", "refused"),
        [
            # Support reads: of the changes, it may only log out of the console.
            ("support", lambda op: op != "POST /admin/logout"),
            # An operator changes everything but the operators, a superadmin's business.
            ("operator", lambda op: "/operators" in op),
        ],
    )
    async def test_each_role_is_refused_exactly_the_changes_above_it(
        self,
        admin_app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        staff: Staff,
        role: str,
        refused: Callable[[str], bool],
    ) -> None:
        """Every change, found from the app, on rows that exist: each operation of the JSON
        API with the role's token, and each console form with its session."""
        ids = await one_of_everything(session)
        auth = getattr(staff, f"{role}_auth")
        console = await console_as(client, getattr(staff, role))
        forms = [p for m, p, _ in console_routes(admin_app) if m == "POST"]
        forms.sort(key=lambda path: path == "/admin/logout")  # last: the others need the session

        answers = {
            f"{method} {path}": await client.request(
                method, filled(path, ids), json={}, headers=auth
            )
            for method, path in json_api_changes(admin_app)
            if path != "/admin/v1/auth/token"
        } | {
            f"POST {path}": await console.submit(filled(path, ids), {"name": "x"})
            for path in forms
            if path not in NO_SESSION_FORMS
        }

        assert len(answers) > 50
        wrong = {
            op: a.status_code for op, a in answers.items() if (a.status_code == 403) != refused(op)
        }
        assert not wrong, f"{role}: {wrong}"

    @pytest.mark.parametrize("path", READS)
    async def test_support_reads_everything(
        self, client: httpx.AsyncClient, staff: Staff, path: str
    ) -> None:
        response = await client.get(path, headers=staff.support_auth)

        assert response.status_code == 200, response.text

    @pytest.mark.parametrize(("method", "path", "body"), WRITES)
    async def test_support_changes_nothing_and_403_comes_before_404(
        self,
        client: httpx.AsyncClient,
        staff: Staff,
        method: str,
        path: str,
        body: dict[str, str] | None,
    ) -> None:
        response = await client.request(method, path, json=body, headers=staff.support_auth)

        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"

    async def test_operator_writes(self, client: httpx.AsyncClient, staff: Staff) -> None:
        response = await client.post(
            "/admin/v1/organizations", json={"name": "Acme"}, headers=staff.operator_auth
        )

        assert response.status_code == 201

    async def test_operator_cannot_manage_operators(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        create = await client.post(
            "/admin/v1/operators",
            json={"email": "new-op@example.com", "role": "support"},
            headers=staff.operator_auth,
        )
        promote = await client.patch(
            f"/admin/v1/operators/{staff.support.id}",
            json={"role": "superadmin"},
            headers=staff.operator_auth,
        )

        assert create.status_code == 403
        assert promote.status_code == 403

    async def test_superadmin_manages_operators(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        create = await client.post(
            "/admin/v1/operators",
            json={"email": "New-Op@Example.com", "role": "support"},
            headers=staff.superadmin_auth,
        )
        assert create.status_code == 201
        body = create.json()
        assert body["email"] == "new-op@example.com"
        assert body["role"] == "support"
        assert body["invite_url"].startswith("https://fleet.example/")

        promote = await client.patch(
            f"/admin/v1/operators/{body['id']}",
            json={"role": "operator"},
            headers=staff.superadmin_auth,
        )
        assert promote.status_code == 200
        assert promote.json()["role"] == "operator"

    async def test_superadmin_cannot_demote_themselves(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        response = await client.patch(
            f"/admin/v1/operators/{staff.superadmin.id}",
            json={"role": "support"},
            headers=staff.superadmin_auth,
        )

        assert response.status_code == 409

    async def test_every_operation_refuses_a_caller_without_credentials(
        self, admin_app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        """Reads included, walked from the app: a route added without an operator
        dependency fails here (the matrix above only sends changes with a role)."""
        answers = {
            f"{method} {context.path}": await client.request(
                method, re.sub(r"{\w+}", str(MISSING), context.path), json={}
            )
            for context in iter_route_contexts(admin_app.routes)
            if isinstance(context.original_route, APIRoute)
            and context.path.startswith("/admin/v1/")
            and context.path != "/admin/v1/auth/token"
            for method in sorted(context.original_route.methods - {"HEAD"})
        }

        assert len(answers) > 50
        wrong = {
            op: a.status_code
            for op, a in answers.items()
            if a.status_code != 401 or a.json()["error"]["code"] != "unauthorized"
        }
        assert not wrong


class TestOperatorEdges:
    """What the role checks alone do not settle: one's own account, the other realm's rows."""

    async def test_nobody_changes_their_own_role_or_deactivates_themselves(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        me = staff.superadmin.id
        deactivate = await client.post(
            f"/admin/v1/operators/{me}/deactivate", headers=staff.superadmin_auth
        )
        console = await console_as(client, staff.superadmin)
        by_form = [
            await console.submit(f"/admin/operators/{me}/role", {"role": "support"}),
            await console.submit(f"/admin/operators/{me}/deactivate"),
        ]
        await session.refresh(staff.superadmin)

        assert deactivate.status_code == 409
        assert deactivate.json()["error"]["code"] == "conflict"
        assert [r.status_code for r in by_form] == [409, 409]
        assert staff.superadmin.platform_role == PlatformRole.SUPERADMIN
        assert staff.superadmin.is_active

    async def test_lower_roles_cannot_raise_themselves(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        answers = [
            await client.patch(
                f"/admin/v1/operators/{who.id}", json={"role": "superadmin"}, headers=auth
            )
            for who, auth in (
                (staff.support, staff.support_auth),
                (staff.operator, staff.operator_auth),
            )
        ]
        console = await console_as(client, staff.operator)
        by_form = await console.submit(
            f"/admin/operators/{staff.operator.id}/role", {"role": "superadmin"}
        )

        assert [a.status_code for a in answers] == [403, 403]
        assert by_form.status_code == 403

    async def test_an_operator_cannot_take_over_a_superadmin_through_the_member_routes(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        """The member routes (operator role) refuse operators' accounts as unknown: no reset
        link, role or deactivation for a superadmin from there."""
        target = staff.superadmin.id
        answers = [
            await client.post(
                f"/admin/v1/users/{target}/reset-password", headers=staff.operator_auth
            ),
            await client.post(f"/admin/v1/users/{target}/deactivate", headers=staff.operator_auth),
            await client.patch(
                f"/admin/v1/users/{target}", json={"role": "owner"}, headers=staff.operator_auth
            ),
            await client.post(
                f"/admin/v1/operators/{target}/reset-password", headers=staff.operator_auth
            ),
        ]
        console = await console_as(client, staff.operator)
        by_form = [
            await console.submit(f"/admin/users/{target}/reset-password"),
            await console.submit(f"/admin/users/{target}/deactivate"),
            await console.submit(f"/admin/users/{target}/role", {"role": "owner"}),
        ]

        assert [a.status_code for a in answers] == [404, 404, 404, 403]
        assert [r.status_code for r in by_form] == [404, 404, 404]
        assert "mpot_" not in answers[0].text + by_form[0].text
