"""The console's forms as an operator meets them: a created secret shown once after a
redirect (a reload neither re-submits nor shows it again), an error shown on the form next
to its field with the input kept, and the console's words ("device", not "vehicle")."""

from __future__ import annotations

import re

import httpx
import pytest
from admin_support import Console, Staff, audit_actions, log_in
from fastapi import FastAPI
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_admin.console.render import console_text
from milepost_common.domain.api_keys.models import ApiKey
from milepost_common.domain.devices.models import Device
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.users.models import User
from milepost_common.testing.factories import make_api_key, make_device, make_organization

SECRET = re.compile(r'id="secret-value">([^<]+)<')


async def _count(session: AsyncSession, model: type, **where: object) -> int:
    query = select(func.count()).select_from(model)
    for name, value in where.items():
        query = query.where(col(getattr(model, name)) == value)
    return int(await session.scalar(query) or 0)


class TestSecretsShownOnce:
    async def test_reload_after_issuing_a_key_issues_and_shows_nothing_more(
        self, client: httpx.AsyncClient, session: AsyncSession, operator_console: Console
    ) -> None:
        org = await make_organization(session)

        issued = await operator_console.submit(
            f"/admin/organizations/{org.id}/api-keys", {"name": "Gateway", "scopes": "ingest"}
        )
        shown = await client.get(issued.headers["location"])
        reloaded = await client.get(issued.headers["location"])

        assert issued.status_code == 303
        secret = SECRET.search(shown.text)
        assert secret
        assert secret.group(1).startswith("mp_")
        assert reloaded.status_code == 200
        assert secret.group(1) not in reloaded.text
        assert 'id="secret-gone"' in reloaded.text
        assert await _count(session, ApiKey, org_id=org.id) == 1

    async def test_rotation_answers_with_a_redirect_to_the_new_secret(
        self, client: httpx.AsyncClient, session: AsyncSession, operator_console: Console
    ) -> None:
        org = await make_organization(session)
        key = await make_api_key(session, org)

        rotated = await operator_console.submit(f"/admin/api-keys/{key.api_key.id}/rotate")
        shown = await client.get("/admin/secret")

        assert rotated.status_code == 303
        secret = SECRET.search(shown.text)
        assert secret
        assert secret.group(1) != key.secret
        assert await _count(session, ApiKey, org_id=org.id) == 2

    async def test_invitation_link_is_shown_once(
        self, client: httpx.AsyncClient, session: AsyncSession, operator_console: Console
    ) -> None:
        org = await make_organization(session)

        created = await operator_console.submit(
            f"/admin/organizations/{org.id}/users",
            {"email": "invitee@example.com", "role": "viewer"},
        )
        shown = await client.get("/admin/secret")
        reloaded = await client.get("/admin/secret")

        assert created.status_code == 303
        link = SECRET.search(shown.text)
        assert link
        assert "#token=" in link.group(1)
        assert link.group(1) not in reloaded.text
        assert await _count(session, User, org_id=org.id) == 1

    async def test_reset_link_is_shown_once(
        self, client: httpx.AsyncClient, session: AsyncSession, operator_console: Console
    ) -> None:
        org = await make_organization(session)
        await operator_console.submit(
            f"/admin/organizations/{org.id}/users",
            {"email": "holder@example.com", "role": "viewer", "password": "a long enough password"},
        )
        user = (await session.scalars(select(User).where(User.org_id == org.id))).one()

        reset = await operator_console.submit(f"/admin/users/{user.id}/reset-password")
        shown = await client.get("/admin/secret")
        reloaded = await client.get("/admin/secret")

        assert reset.status_code == 303
        link = SECRET.search(shown.text)
        assert link
        assert link.group(1) not in reloaded.text

    async def test_import_report_survives_a_reload_and_imports_once(
        self, client: httpx.AsyncClient, session: AsyncSession, operator_console: Console
    ) -> None:
        org = await make_organization(session)

        imported = await operator_console.submit(
            f"/admin/organizations/{org.id}/devices/import",
            files={"csv_file": ("d.csv", b"unique_id,name\nimp-1,Truck 1\nimp-2,Truck 2\n")},
        )
        first = await client.get(imported.headers["location"])
        reloaded = await client.get(imported.headers["location"])

        assert imported.status_code == 303
        assert "2 created, 0 failed" in first.text
        assert "2 created, 0 failed" in reloaded.text
        assert await _count(session, Device, org_id=org.id) == 2

    async def test_a_file_in_another_encoding_is_refused_not_stored_mangled(
        self, client: httpx.AsyncClient, session: AsyncSession, operator_console: Console
    ) -> None:
        # Excel's "CSV" (cp1252): "Köln" was stored as "K\ufffdln".
        org = await make_organization(session)

        refused = await operator_console.submit(
            f"/admin/organizations/{org.id}/devices/import",
            files={"csv_file": ("d.csv", "unique_id,name\nimp-1,Köln\n".encode("cp1252"))},
        )

        assert refused.status_code == 422
        assert "not UTF-8" in refused.text
        assert await _count(session, Device, org_id=org.id) == 0


class TestFormErrors:
    async def test_bad_time_zone_is_shown_beside_its_field_with_the_input_kept(
        self, session: AsyncSession, operator_console: Console
    ) -> None:
        response = await operator_console.submit(
            "/admin/organizations", {"name": "Mars Freight", "timezone": "Mars/Olympus"}
        )

        assert response.status_code == 422
        assert response.headers["content-type"].startswith("text/html")
        assert 'value="Mars Freight"' in response.text
        assert 'value="Mars/Olympus"' in response.text
        assert re.search(
            r'id="new-organization-timezone-error">[^<]*not an IANA time zone', response.text
        )
        assert "<details open>" in response.text
        assert await _count(session, Organization, name="Mars Freight") == 0

    async def test_duplicate_unique_id_speaks_of_devices_on_the_organization_page(
        self, session: AsyncSession, operator_console: Console
    ) -> None:
        org = await make_organization(session)
        taken = await make_device(session, org)

        response = await operator_console.submit(
            f"/admin/organizations/{org.id}/devices",
            {"unique_id": taken.unique_id, "name": "Second van"},
        )

        assert response.status_code == 409
        errors = re.search(r'id="new-device-unique_id-error">([^<]+)<', response.text)
        assert errors
        assert errors.group(1) == "A device with this unique_id already exists."
        assert "vehicle" not in errors.group(1).lower()
        assert 'value="Second van"' in response.text
        assert f'<h1><span class="long">{org.name}</span>' in response.text

    async def test_bad_email_keeps_the_input_but_never_the_password(
        self, session: AsyncSession, operator_console: Console
    ) -> None:
        org = await make_organization(session)

        response = await operator_console.submit(
            f"/admin/organizations/{org.id}/users",
            {"email": "dispatcher@fleet", "role": "manager", "password": "a secret password here"},
        )

        assert response.status_code == 422
        assert 'value="dispatcher@fleet"' in response.text
        assert re.search(r'<option value="manager" selected>', response.text)
        assert 'id="new-user-email-error"' in response.text
        assert "a secret password here" not in response.text
        assert await _count(session, User, org_id=org.id) == 0

    async def test_a_missing_field_is_shown_on_the_form(
        self, session: AsyncSession, operator_console: Console
    ) -> None:
        org = await make_organization(session)

        response = await operator_console.submit(
            f"/admin/organizations/{org.id}/devices", {"unique_id": "no-name"}
        )

        assert response.status_code == 422
        assert 'id="new-device-name-error"' in response.text
        assert 'value="no-name"' in response.text

    async def test_an_error_of_no_field_is_shown_at_the_top_of_the_form(
        self, session: AsyncSession, operator_console: Console
    ) -> None:
        org = await make_organization(session, max_devices=0)

        response = await operator_console.submit(
            f"/admin/organizations/{org.id}/devices", {"unique_id": "over", "name": "One too many"}
        )

        assert response.status_code == 409
        problem = r'class="form-error wide" role="alert">[^<]*no more devices'
        assert re.search(problem, response.text)

    async def test_an_export_of_a_kind_that_does_not_exist_is_shown_on_the_export_form(
        self, session: AsyncSession, operator_console: Console
    ) -> None:
        org = await make_organization(session)
        path = f"/admin/organizations/{org.id}/export"

        unknown = await operator_console.submit(path, {"format": "csv", "kind": "everything"})
        trips = await operator_console.submit(path, {"format": "csv", "kind": "trips"})

        assert unknown.status_code == 422
        assert 'id="export-kind-error"' in unknown.text
        assert trips.status_code == 200
        assert trips.headers["content-type"].startswith("text/csv")
        assert f"milepost-{org.id}-trips.csv" in trips.headers["content-disposition"]

    async def test_an_export_while_the_console_streams_its_most_says_to_retry(
        self,
        admin_app: FastAPI,
        session: AsyncSession,
        operator_console: Console,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Each export holds a database connection until it is read: past ``exports_at_once``
        at a time the console says to try again, and records no export."""
        org = await make_organization(session)
        path = f"/admin/organizations/{org.id}/export"
        turns = admin_app.state.ctx.exports
        monkeypatch.setattr(turns, "taken", admin_app.state.settings.admin.exports_at_once)

        busy = await operator_console.submit(path, {"format": "ndjson", "kind": ""})
        turns.taken = 0
        free = await operator_console.submit(path, {"format": "ndjson", "kind": ""})

        assert busy.status_code == 503
        assert busy.headers["Retry-After"] == "5"
        assert busy.headers["content-type"].startswith("text/html")
        assert "as many downloads as it may at once" in busy.text
        assert free.status_code == 200
        assert turns.taken == 0
        assert await audit_actions(session, action="organizations.export") == [
            "organizations.export"
        ]

    async def test_a_refused_form_still_needs_its_csrf_token(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        await log_in(client, staff.operator)

        response = await client.post(
            f"/admin/organizations/{org.id}/devices", data={"unique_id": "x", "name": "y"}
        )

        assert response.status_code == 403
        assert "reload and retry" in response.text


@pytest.mark.parametrize(
    ("message", "said"),
    [
        ("Vehicle not found.", "Device not found."),
        ("The organization's plan allows no more vehicles.", "…no more devices."),
        ("vehicle_id is unknown", "vehicle_id is unknown"),
    ],
)
def test_console_text_says_device(message: str, said: str) -> None:
    assert console_text(message).endswith(said.lstrip("…"))
