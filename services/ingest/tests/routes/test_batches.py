"""``GET /ingest/v1/batches/{batch_id}``: the batch shape, same organization only."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.devices.models import Device
from milepost_common.domain.organizations.models import Organization
from milepost_common.testing.factories import make_api_key, make_organization

Fix = Callable[..., dict[str, Any]]


async def pushed_batch(
    client: httpx.AsyncClient, auth: dict[str, str], device: Device, fix: Fix
) -> str:
    response = await client.post(
        "/ingest/v1/positions",
        json={"positions": [fix(device), fix("stranger")]},
        headers=auth,
    )
    batch_id: str = response.json()["batch_id"]
    return batch_id


class TestGetBatch:
    async def test_shape_of_a_batch(
        self, client: httpx.AsyncClient, auth: dict[str, str], device: Device, fix: Fix
    ) -> None:
        batch_id = await pushed_batch(client, auth, device, fix)
        response = await client.get(f"/ingest/v1/batches/{batch_id}", headers=auth)
        assert response.status_code == 200
        batch = response.json()
        assert set(batch) == {
            "id",
            "status",
            "source",
            "received_at",
            "processed_at",
            "accepted",
            "rejected",
            "duplicates",
            "errors",
            "attempts",
            "last_error",
        }
        assert batch["id"] == batch_id
        assert (batch["status"], batch["source"]) == ("queued", "json")
        assert (batch["accepted"], batch["rejected"], batch["duplicates"]) == (1, 1, 0)
        assert batch["errors"] == [
            {"index": 1, "code": "unknown_device", "message": "Unknown device."}
        ]
        assert batch["received_at"].endswith("Z")
        assert (batch["processed_at"], batch["attempts"], batch["last_error"]) == (None, 0, None)

    async def test_another_key_of_the_organization_reads_it(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        device: Device,
        fix: Fix,
        session: AsyncSession,
        org: Organization,
    ) -> None:
        batch_id = await pushed_batch(client, auth, device, fix)
        other = await make_api_key(session, org)
        response = await client.get(
            f"/ingest/v1/batches/{batch_id}", headers={"X-API-Key": other.secret}
        )
        assert response.status_code == 200

    async def test_another_organizations_batch_is_404(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        device: Device,
        fix: Fix,
        session: AsyncSession,
    ) -> None:
        batch_id = await pushed_batch(client, auth, device, fix)
        stranger = await make_api_key(session, await make_organization(session))
        response = await client.get(
            f"/ingest/v1/batches/{batch_id}", headers={"X-API-Key": stranger.secret}
        )
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    async def test_unknown_batch_is_404_and_a_bad_id_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        missing = await client.get(f"/ingest/v1/batches/{uuid.uuid4()}", headers=auth)
        assert missing.status_code == 404
        bad = await client.get("/ingest/v1/batches/not-a-uuid", headers=auth)
        assert bad.status_code == 422

    async def test_without_a_key_is_401_before_404(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"/ingest/v1/batches/{uuid.uuid4()}")
        assert response.status_code == 401
