"""The role matrix: support reads, operator writes, superadmin manages operators."""

from __future__ import annotations

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
from sqlalchemy.ext.asyncio import AsyncSession

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
