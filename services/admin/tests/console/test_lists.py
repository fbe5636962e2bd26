"""The console's lists as an operator meets them: newest first everywhere (the JSON API
keeps its ascending order), sortable columns, organizations and devices found by name,
OsmAnd fixes summed up per device with the failed batch one click away, and the read-only
tables in the console's look with names beside ids."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from admin_support import Staff, log_in
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.devices.models import Device
from milepost_common.domain.ingest_batches.models import BatchSource, BatchStatus, IngestBatch
from milepost_common.domain.organizations.models import Organization
from milepost_common.testing.factories import (
    make_api_key,
    make_device,
    make_organization,
    make_user,
    make_webhook_delivery,
)

NOW = datetime.now(UTC)


def order_of(html: str, *needles: str) -> list[str]:
    """The needles in the order the page shows them."""
    return sorted(needles, key=html.index)


async def make_batch(
    session: AsyncSession,
    org: Organization,
    source: BatchSource,
    *,
    device: Device | None = None,
    sent_for: str | None = None,
    status: BatchStatus = BatchStatus.PROCESSED,
    minutes_ago: int = 1,
) -> IngestBatch:
    rejected: list[dict[str, Any]] = (
        [{"index": 0, "code": "unknown_device", "item": {"device_id": sent_for}}]
        if sent_for
        else []
    )
    batch = IngestBatch(
        org_id=org.id,
        source=source,
        status=status,
        accepted=1 if device else 0,
        rejected=len(rejected),
        rejected_items=rejected,
        device_ids=[str(device.id)] if device else [],
        received_at=NOW - timedelta(minutes=minutes_ago),
    )
    session.add(batch)
    await session.flush()
    return batch


class TestNewestFirst:
    async def test_users_devices_and_keys_list_newest_first_in_the_console_only(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        old_user, new_user = await make_user(session, org), await make_user(session, org)
        old_device, new_device = await make_device(session, org), await make_device(session, org)
        old_key = await make_api_key(session, org, name="older key")
        new_key = await make_api_key(session, org, name="newer key")
        await log_in(client, staff.support)

        users = (await client.get(f"/admin/users?org_id={org.id}")).text
        devices = (await client.get(f"/admin/devices?org_id={org.id}")).text
        keys = (await client.get(f"/admin/api-keys?org_id={org.id}")).text
        api = await client.get(f"/admin/v1/devices?org_id={org.id}", headers=staff.support_auth)

        assert order_of(users, old_user.email, new_user.email) == [new_user.email, old_user.email]
        assert order_of(devices, old_device.unique_id, new_device.unique_id) == [
            new_device.unique_id,
            old_device.unique_id,
        ]
        assert order_of(keys, "older key", "newer key") == ["newer key", "older key"]
        assert [d["id"] for d in api.json()["items"]] == [str(old_device.id), str(new_device.id)]
        assert old_key.api_key.id != new_key.api_key.id


class TestSorting:
    async def test_a_column_header_sorts_and_a_second_click_reverses(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        for name in ("Bravo", "Alpha", "Charlie"):
            await make_device(session, org, name=name)
        await log_in(client, staff.support)

        first = await client.get(f"/admin/devices?org_id={org.id}")
        link = re.search(r'<a class="sort" href="([^"]*sort=name[^"]*)">Name', first.text)
        assert link
        by_name = await client.get(link.group(1).replace("&amp;", "&"))
        back = re.search(r'<a class="sort" href="([^"]*sort=-name[^"]*)">Name', by_name.text)
        assert back
        reversed_ = await client.get(back.group(1).replace("&amp;", "&"))

        assert order_of(by_name.text, "Alpha", "Bravo", "Charlie") == ["Alpha", "Bravo", "Charlie"]
        assert 'aria-sort="ascending"' in by_name.text
        assert order_of(reversed_.text, "Alpha", "Bravo", "Charlie") == [
            "Charlie",
            "Bravo",
            "Alpha",
        ]

    async def test_last_login_sorts_the_never_logged_in_last_across_pages(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        never = await make_user(session, org)
        earlier = await make_user(session, org, last_login_at=NOW - timedelta(days=2))
        latest = await make_user(session, org, last_login_at=NOW - timedelta(hours=1))

        seen: list[str] = []
        cursor: str | None = None
        for _ in range(4):
            params: dict[str, Any] = {"org_id": str(org.id), "sort": "-last_login_at", "limit": 1}
            if cursor:
                params["cursor"] = cursor
            page = (
                await client.get("/admin/v1/users", params=params, headers=staff.support_auth)
            ).json()
            seen += [u["id"] for u in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break

        assert seen == [str(latest.id), str(earlier.id), str(never.id)]


class TestFindByName:
    async def test_lists_filter_by_part_of_the_organization_name(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        tag = uuid.uuid4().hex[:6]
        acme = await make_organization(session, name=f"Acme Haulage {tag}")
        other = await make_organization(session, name=f"Zenith {tag}")
        kept = await make_device(session, acme)
        dropped = await make_device(session, other)
        await log_in(client, staff.support)

        page = await client.get("/admin/devices", params={"org_name": f"haulage {tag}"})
        api = await client.get(
            "/admin/v1/devices",
            params={"org_name": f"acme haulage {tag}"},
            headers=staff.support_auth,
        )

        assert kept.unique_id in page.text
        assert dropped.unique_id not in page.text
        assert [d["id"] for d in api.json()["items"]] == [str(kept.id)]
        assert "Organization id" not in page.text

    async def test_suggestions_for_the_search_boxes(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        tag = uuid.uuid4().hex[:6]
        org = await make_organization(session, name=f"Suggested {tag}")
        device = await make_device(session, org, name=f"Reefer {tag}")
        await log_in(client, staff.support)

        orgs = await client.get("/admin/suggest/organizations", params={"org_name": tag})
        devices = await client.get("/admin/suggest/devices", params={"device": f"reefer {tag}"})

        assert f'<option value="Suggested {tag}">' in orgs.text
        assert f'<option value="{device.unique_id}">Reefer {tag}</option>' in devices.text

    async def test_an_organization_chosen_by_id_shows_its_name(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session, name="Chosen Fleet")
        await log_in(client, staff.support)

        page = await client.get(f"/admin/users?org_id={org.id}")

        chip = r'class="chip">Organization <span class="clip" title="Chosen Fleet">'
        assert re.search(chip, page.text)


class TestBatches:
    async def test_osmand_fixes_are_summed_up_per_device_with_the_failed_one_linked(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        phone = await make_device(session, org, name="Courier phone")
        for minutes in (5, 4, 2):
            await make_batch(session, org, BatchSource.OSMAND, device=phone, minutes_ago=minutes)
        failed = await make_batch(
            session, org, BatchSource.OSMAND, device=phone, status=BatchStatus.FAILED, minutes_ago=3
        )
        await make_batch(session, org, BatchSource.OSMAND, sent_for="stranger-phone")
        pushed = await make_batch(session, org, BatchSource.JSON, minutes_ago=6)
        await log_in(client, staff.support)

        grouped = await client.get(f"/admin/ingest-batches?org_id={org.id}")
        each = await client.get(f"/admin/ingest-batches?org_id={org.id}&osmand=each")

        summary = grouped.text[grouped.text.index('id="osmand-devices"') :]
        start = summary.index("Courier phone")
        row = summary[start : summary.index("</tr>", start)]
        assert '<td class="num">4</td>' in row
        assert f'href="/admin/ingest-batches/{failed.id}"' in row
        assert "stranger-phone" in summary
        assert f'href="/admin/ingest-batches/{pushed.id}"' in grouped.text
        assert grouped.text.count('href="/admin/ingest-batches/') == 2
        assert each.text.count('href="/admin/ingest-batches/') == 6

    async def test_lists_filter_by_source_and_by_device(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        van = await make_device(session, org, name="Blue van")
        osmand = await make_batch(session, org, BatchSource.OSMAND, device=van)
        ndjson = await make_batch(session, org, BatchSource.NDJSON, device=van)
        stray = await make_batch(session, org, BatchSource.JSON, sent_for="blue-tracker-9")
        await make_batch(session, org, BatchSource.JSON)

        def ids(response: httpx.Response) -> set[str]:
            return {b["id"] for b in response.json()["items"]}

        by_source = await client.get(
            "/admin/v1/ingest-batches",
            params={"org_id": str(org.id), "source": "osmand"},
            headers=staff.support_auth,
        )
        by_name = await client.get(
            "/admin/v1/ingest-batches",
            params={"org_id": str(org.id), "device": "blue"},
            headers=staff.support_auth,
        )

        assert ids(by_source) == {str(osmand.id)}
        assert ids(by_name) == {str(osmand.id), str(ndjson.id), str(stray.id)}


class TestTables:
    async def test_tables_wear_the_console_and_name_what_ids_point_at(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session, name="Named In Tables")
        device = await make_device(session, org)
        await log_in(client, staff.support)

        listing = await client.get("/admin/models/device/list", params={"search": device.unique_id})
        details = await client.get(f"/admin/models/device/details/{device.id}")
        index = await client.get("/admin/models/")

        for page in (listing, details, index):
            assert page.status_code == 200, page.text
            assert page.headers["content-security-policy"].startswith("default-src 'self';")
            assert page.headers["cache-control"] == "no-store"
            assert 'href="/admin/organizations"' in page.text
            assert 'action="/admin/logout"' in page.text
            assert "/admin/models/logout" not in page.text
            assert "<script" not in page.text
            assert '<a href="/admin/">← Console</a>' in page.text
        named = f'href="/admin/organizations/{org.id}" title="Named In Tables">Named In Tables</a>'
        assert named in listing.text
        assert f'<code class="muted id">{org.id}</code>' in listing.text
        assert "Actions" not in listing.text
        assert 'type="checkbox"' not in listing.text
        assert f'<a href="/admin/organizations/{org.id}">Named In Tables</a>' in details.text
        assert "Delete" not in details.text
        assert "Edit" not in details.text

    async def test_the_webhook_endpoints_table_shows_no_receivers_token(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        delivery = await make_webhook_delivery(
            session, org, url="https://hooks.example/in/PATH-TOKEN?token=CUSTOMER-TOKEN"
        )
        await log_in(client, staff.support)

        listing = await client.get("/admin/models/webhook-endpoint/list")
        details = await client.get(f"/admin/models/webhook-endpoint/details/{delivery.endpoint_id}")
        organization = await client.get(f"/admin/organizations/{org.id}")

        for page in (listing, details, organization):
            assert page.status_code == 200, page.text
            assert "CUSTOMER-TOKEN" not in page.text
            assert "PATH-TOKEN" not in page.text
        assert "https://hooks.example/…" in organization.text

    async def test_the_tables_logout_leads_to_the_console(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        await log_in(client, staff.support)

        response = await client.get("/admin/models/logout")

        assert response.status_code == 303
        assert response.headers["location"] == "/admin/"
