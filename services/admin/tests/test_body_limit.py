"""Body limits of the admin app: 1 MiB for its JSON and forms, more for the device imports."""

from __future__ import annotations

import httpx
from admin_support import Console, Staff
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_admin.settings import AdminSettings
from milepost_common.testing.factories import make_organization

MIB = 1024 * 1024
CSV_HEADER = "unique_id,name,plate,speed_limit_kmh\n"


def padded_csv(unique_id: str, size: int) -> str:
    """One device, then blank lines (the import skips them) up to `size` characters."""
    text = f"{CSV_HEADER}{unique_id},Truck,,\n"
    return text + "\n" * (size - len(text))


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["trace_id"] == response.headers["X-Request-ID"]


class TestDefaultLimit:
    async def test_login_form_over_the_limit_is_refused(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/admin/v1/auth/token",
            data={"username": "someone@example.com", "password": "x" * (2 * MIB)},
        )

        assert_too_large(response)

    async def test_json_over_the_limit_is_refused_before_authentication(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post("/admin/v1/organizations", json={"name": "x" * (2 * MIB)})

        assert_too_large(response)


class TestDeviceImport:
    async def test_json_api_takes_a_file_over_the_default_limit(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/devices/import",
            content=padded_csv("big-import-1", int(1.5 * MIB)),
            headers={**staff.operator_auth, "Content-Type": "text/csv"},
        )

        assert response.status_code == 200, response.text
        assert response.json()["created"] == 1

    async def test_console_takes_a_file_over_the_default_limit(
        self, session: AsyncSession, operator_console: Console
    ) -> None:
        org = await make_organization(session)

        response = await operator_console.submit(
            f"/admin/organizations/{org.id}/devices/import",
            files={"csv_file": ("devices.csv", padded_csv("big-import-2", int(1.5 * MIB)))},
            follow_redirects=True,  # the import answers with a redirect to its report
        )

        assert response.status_code == 200, response.text
        assert "big-import-2" in response.text

    async def test_import_over_its_own_limit_is_refused(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        staff: Staff,
        admin_settings: AdminSettings,
    ) -> None:
        org = await make_organization(session)
        size = admin_settings.admin.max_import_body_bytes + 1

        response = await client.post(
            f"/admin/v1/organizations/{org.id}/devices/import",
            content=padded_csv("too-big-1", size),
            headers={**staff.operator_auth, "Content-Type": "text/csv"},
        )

        assert_too_large(response)


class TestOpenApi:
    def test_every_operation_with_a_body_documents_the_413(self, admin_app: FastAPI) -> None:
        operations = [
            operation
            for path_item in admin_app.openapi()["paths"].values()
            for operation in path_item.values()
            if "requestBody" in operation
        ]

        assert operations
        assert all("413" in operation["responses"] for operation in operations)
