"""``POST /ingest/v1/positions``: counts, item codes, formats, whole-request errors (its
Idempotency-Key: test_positions_idempotency.py)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain.devices import tenure as device_tenure
from milepost_common.domain.devices.models import Device
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.positions.models import Position
from milepost_common.testing.factories import (
    make_api_key,
    make_device,
    make_operator,
    make_organization,
    make_position,
    principal_for,
)
from services.ingest.tests.routes.positions_support import (
    URL,
    Fix,
    Fixes,
    assert_error,
    batch_row,
    push,
    stored,
)


class TestAccepted:
    async def test_json_batch_is_stored_and_queued(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        device: Device,
        session: AsyncSession,
        fixes: Fixes,
    ) -> None:
        response = await push(client, auth, fixes(device, 3))
        assert response.status_code == 202
        body = response.json()
        assert body == {
            "batch_id": body["batch_id"],
            "accepted": 3,
            "rejected": 0,
            "duplicates": 0,
            "errors": [],
        }
        assert response.headers["Location"] == f"/ingest/v1/batches/{body['batch_id']}"
        assert "Idempotent-Replayed" not in response.headers
        rows = await stored(session, body["batch_id"])
        assert [(r.device_id, r.org_id, r.lat, r.speed, r.attributes) for r in rows] == [
            (device.id, device.org_id, 52.52, 42.0, {"ignition": True})
        ] * 3
        batch = await batch_row(session, body["batch_id"])
        assert (batch.status, batch.source, batch.accepted) == ("queued", "json", 3)
        assert batch.device_ids == [str(device.id)]

    async def test_ndjson_with_blank_lines_indexes_non_blank_lines(
        self, client: httpx.AsyncClient, auth: dict[str, str], device: Device, fixes: Fixes
    ) -> None:
        good = fixes(device, 2)
        lines = [orjson.dumps(good[0]), b"", b"   ", b"{not json", b"", orjson.dumps(good[1])]
        response = await client.post(
            URL,
            content=b"\r\n".join(lines) + b"\n\n",
            headers={**auth, "Content-Type": "application/x-ndjson"},
        )
        assert response.status_code == 202
        body = response.json()
        assert (body["accepted"], body["rejected"], body["duplicates"]) == (2, 1, 0)
        assert body["errors"] == [
            {"index": 1, "code": "invalid_field", "message": "Not valid JSON."}
        ]

    async def test_gzip_json_is_decoded(
        self, client: httpx.AsyncClient, auth: dict[str, str], device: Device, fixes: Fixes
    ) -> None:
        payload = gzip.compress(orjson.dumps({"positions": fixes(device, 5)}))
        response = await client.post(
            URL,
            content=payload,
            headers={**auth, "Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert response.status_code == 202
        assert response.json()["accepted"] == 5

    async def test_gzip_ndjson_in_two_members_is_decoded(
        self, client: httpx.AsyncClient, auth: dict[str, str], device: Device, fixes: Fixes
    ) -> None:
        first, second = fixes(device, 2)
        payload = gzip.compress(orjson.dumps(first) + b"\n") + gzip.compress(orjson.dumps(second))
        response = await client.post(
            URL,
            content=payload,
            headers={**auth, "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
        )
        assert response.json()["accepted"] == 2

    async def test_all_rejected_is_still_accepted_as_a_batch(
        self, client: httpx.AsyncClient, auth: dict[str, str], fix: Fix
    ) -> None:
        response = await push(client, auth, [fix("nobody"), fix("nobody-else")])
        assert response.status_code == 202
        body = response.json()
        assert (body["accepted"], body["rejected"]) == (0, 2)


class TestItemCodes:
    async def test_every_code_once_and_the_counts_add_up(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        device: Device,
        session: AsyncSession,
        fix: Fix,
    ) -> None:
        now = datetime.now(UTC)
        await make_position(session, device, now - timedelta(hours=2))
        items: list[Any] = [
            fix(device, now - timedelta(minutes=1)),  # 0 accepted
            fix(device, now - timedelta(hours=2)),  # 1 duplicate of a stored fix
            fix(device, now - timedelta(minutes=1)),  # 2 duplicate within the batch
            {"device_id": device.unique_id, "lat": 1.0, "lon": 2.0},  # 3 no fix_time
            fix(device, lat=91.0),  # 4
            fix(device, lat=0.0, lon=0.0),  # 5
            fix(device, now + timedelta(hours=1)),  # 6
            fix(device, now - timedelta(days=400)),  # 7
            fix(device, speed=1000.0),  # 8
            fix("no-such-device"),  # 9
            "not an object",  # 10
            fix(device, fix_time="2026-01-01T00:00:00"),  # 11 no offset
            fix(device, lat="52.5"),  # 12
            fix(device, speed=-1.0),  # 13
            fix(device, course=361.0),  # 14
            fix(device, attributes={"ignition": "yes"}),  # 15
            fix(device, attributes=[1, 2]),  # 16
            fix(device, device_id=""),  # 17
            fix(device, lon=-180.5),  # 18
        ]
        response = await push(client, auth, items)
        assert response.status_code == 202
        body = response.json()
        codes = {e["index"]: e["code"] for e in body["errors"]}
        assert codes == {
            3: "invalid_field",
            4: "invalid_coordinates",
            5: "invalid_coordinates",
            6: "fix_time_in_future",
            7: "fix_time_too_old",
            8: "implausible_speed",
            9: "unknown_device",
            10: "invalid_field",
            11: "invalid_field",
            12: "invalid_field",
            13: "invalid_field",
            14: "invalid_field",
            15: "invalid_field",
            16: "invalid_field",
            17: "invalid_field",
            18: "invalid_coordinates",
        }
        assert all(e["message"] for e in body["errors"])
        assert (body["accepted"], body["rejected"], body["duplicates"]) == (1, 16, 2)
        assert body["accepted"] + body["rejected"] + body["duplicates"] == len(items)
        assert len(await stored(session, body["batch_id"])) == 1

    async def test_rejected_items_are_kept_for_seven_days(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        device: Device,
        session: AsyncSession,
        fix: Fix,
    ) -> None:
        unknown = fix("registered-later")
        with_nul = fix(device, attributes={"odd": "a\u0000b"})
        response = await push(client, auth, [fix(device), unknown, with_nul])
        batch = await batch_row(session, response.json()["batch_id"])
        assert batch.rejected_items == [
            {"index": 1, "code": "unknown_device", "item": unknown},
            {
                "index": 2,
                "code": "invalid_field",
                "item": {**with_nul, "attributes": {"odd": "a\ufffdb"}},  # Postgres holds no NUL
            },
        ]
        assert batch.rejected_items_expire_at is not None
        assert batch.rejected_items_expire_at - batch.received_at == timedelta(days=7)
        assert batch.errors == response.json()["errors"]

    async def test_another_organizations_device_is_unknown(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession, fix: Fix
    ) -> None:
        foreign = await make_device(session, await make_organization(session))
        response = await push(client, auth, [fix(foreign)])
        assert response.json()["errors"][0]["code"] == "unknown_device"
        count = await session.scalar(
            select(func.count()).where(col(Position.device_id) == foreign.id)
        )
        assert count == 0

    async def test_a_fix_older_than_the_devices_tenure_is_before_transfer(
        self, client: httpx.AsyncClient, session: AsyncSession, fix: Fix
    ) -> None:
        old, new = await make_organization(session), await make_organization(session)
        device = await make_device(session, old)
        last_old = await make_position(session, device, datetime.now(UTC) - timedelta(minutes=10))
        operator = principal_for(await make_operator(session))
        await device_tenure.transfer_device(session, operator, device, new)
        auth = {"Authorization": f"Bearer {(await make_api_key(session, new)).secret}"}

        response = await push(
            client,
            auth,
            [fix(device, last_old.fix_time), fix(device, datetime.now(UTC) + timedelta(seconds=1))],
        )

        body = response.json()
        assert [(e["index"], e["code"]) for e in body["errors"]] == [(0, "before_transfer")]
        assert (body["accepted"], body["rejected"]) == (1, 1)
        kept = await session.scalar(
            select(func.count()).where(
                col(Position.device_id) == device.id, col(Position.org_id) == old.id
            )
        )
        assert kept == 1  # the old organization's fix, untouched

    async def test_the_old_organization_writes_nothing_once_the_device_is_transferred(
        self, client: httpx.AsyncClient, session: AsyncSession, fix: Fix
    ) -> None:
        # The ingest's device cache lags a transfer by seconds: the old organization's key
        # stored a fix inside the new tenure, and the new organization's own fix at that
        # instant was then a "duplicate", never stored.
        old, new = await make_organization(session), await make_organization(session)
        device = await make_device(session, old)
        old_auth = {"Authorization": f"Bearer {(await make_api_key(session, old)).secret}"}
        new_auth = {"Authorization": f"Bearer {(await make_api_key(session, new)).secret}"}
        first = await push(
            client, old_auth, [fix(device, datetime.now(UTC) - timedelta(minutes=1))]
        )
        assert first.json()["accepted"] == 1  # the device is in the ingest's cache now
        operator = principal_for(await make_operator(session))
        await device_tenure.transfer_device(session, operator, device, new)
        later = datetime.now(UTC) + timedelta(seconds=2)

        stale = await push(client, old_auth, [fix(device, later)])
        own = await push(client, new_auth, [fix(device, later)])

        assert stale.json()["accepted"] == 0
        assert own.json()["accepted"] == 1
        owner = await session.scalar(
            select(col(Position.org_id)).where(
                col(Position.device_id) == device.id, col(Position.fix_time) == later
            )
        )
        assert owner == new.id

    async def test_a_device_registered_after_a_push_is_found_at_once(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        org: Organization,
        fix: Fix,
    ) -> None:
        first = await push(client, auth, [fix("registered-now")])
        assert first.json()["errors"][0]["code"] == "unknown_device"
        await make_device(session, org, unique_id="registered-now")
        again = await push(client, auth, [fix("registered-now")])
        assert again.json()["accepted"] == 1

    async def test_disabled_device_is_unknown(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        org: Organization,
        fix: Fix,
    ) -> None:
        disabled = await make_device(session, org, disabled=True)
        response = await push(client, auth, [fix(disabled)])
        assert response.json()["errors"] == [
            {"index": 0, "code": "unknown_device", "message": "The device is disabled."}
        ]

    async def test_fix_before_the_oldest_partition_is_too_old(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        device: Device,
        org: Organization,
        session: AsyncSession,
        fix: Fix,
    ) -> None:
        org.retention_days = 3650  # the test database has 40 days of partitions
        session.add(org)
        await session.flush()
        response = await push(client, auth, [fix(device, datetime.now(UTC) - timedelta(days=60))])
        assert response.json()["errors"][0]["code"] == "fix_time_too_old"

    async def test_organization_filters_apply(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        device: Device,
        org: Organization,
        session: AsyncSession,
        fix: Fix,
    ) -> None:
        org.max_speed_kmh = 100.0
        org.max_clock_skew_s = 3600
        org.retention_days = 1
        session.add(org)
        await session.flush()
        now = datetime.now(UTC)
        response = await push(
            client,
            auth,
            [
                fix(device, now + timedelta(minutes=30)),
                fix(device, speed=120.0),
                fix(device, now - timedelta(days=2)),
            ],
        )
        codes = [e["code"] for e in response.json()["errors"]]
        assert codes == ["implausible_speed", "fix_time_too_old"]
        assert response.json()["accepted"] == 1


class TestOddItems:
    """Items a gateway may send that are well-formed JSON but hold what Python or Postgres
    cannot take as they are: each is rejected on its own, the batch's others are stored."""

    DEEP = b"[" * 1100 + b"]" * 1100

    @staticmethod
    def written(items: list[dict[str, Any]], placeholder: bytes) -> bytes:
        """The items as JSON lines, ``"ODD"`` written as ``placeholder`` (no encoder would)."""
        return b"\n".join(orjson.dumps(item).replace(b'"ODD"', placeholder) for item in items)

    # Beyond a double: rejected (Postgres refused the whole batch); below one: read as -0.0.
    @pytest.mark.parametrize(("number", "counts"), [(b"1e999999", (1, 1)), (b"-1e-999999", (2, 0))])
    async def test_a_number_beyond_jsonb_in_attributes(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        device: Device,
        fixes: Fixes,
        number: bytes,
        counts: tuple[int, int],
    ) -> None:
        good, odd = fixes(device, 2)
        lines = self.written([good, {**odd, "attributes": {"x": "ODD"}}], number)
        body = b'{"positions": [' + lines.replace(b"\n", b",") + b"]}"

        response = await client.post(
            URL, content=body, headers={**auth, "Content-Type": "application/json"}
        )

        assert response.status_code == 202, response.text
        assert (response.json()["accepted"], response.json()["rejected"]) == counts

    async def test_an_ndjson_line_nested_too_deep(
        self, client: httpx.AsyncClient, auth: dict[str, str], device: Device, fixes: Fixes
    ) -> None:
        good, odd = fixes(device, 2)
        lines = self.written([good, {**odd, "attributes": {"x": "ODD"}}], self.DEEP)

        response = await client.post(
            URL, content=lines, headers={**auth, "Content-Type": "application/x-ndjson"}
        )

        assert response.status_code == 202, response.text
        assert (response.json()["accepted"], response.json()["rejected"]) == (1, 1)

    async def test_a_json_batch_nested_too_deep_is_malformed(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        body = b'{"positions": [' + self.DEEP + b"]}"

        response = await client.post(
            URL, content=body, headers={**auth, "Content-Type": "application/json"}
        )

        assert_error(response, 400, "malformed_body")

    async def test_a_utc_offset_with_seconds(
        self, client: httpx.AsyncClient, auth: dict[str, str], device: Device, fix: Fix
    ) -> None:
        # ISO 8601 has no such offset; Python reads it, and the time would be stored 30 s off.
        at = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0)
        sent = (at + timedelta(hours=5, seconds=30)).strftime("%Y-%m-%dT%H:%M:%S") + "+05:00:30"

        response = await push(client, auth, [fix(device, sent)])

        assert response.status_code == 202, response.text
        assert response.json()["errors"] == [
            {
                "index": 0,
                "code": "invalid_field",
                "message": "fix_time's UTC offset must be whole minutes.",
            }
        ]


class TestWholeRequestErrors:
    @pytest.mark.parametrize(
        ("content", "content_type"),
        [(b"{nope", "application/json"), (b"\xff\xfe", "application/json")],
    )
    async def test_unparseable_body_is_malformed(
        self, client: httpx.AsyncClient, auth: dict[str, str], content: bytes, content_type: str
    ) -> None:
        response = await client.post(
            URL, content=content, headers={**auth, "Content-Type": content_type}
        )
        assert_error(response, 400, "malformed_body")

    @pytest.mark.parametrize(
        "payload",
        [b"not gzip at all", gzip.compress(b'{"positions": []}')[:-8]],
        ids=["corrupt", "truncated"],
    )
    async def test_bad_gzip_is_malformed(
        self, client: httpx.AsyncClient, auth: dict[str, str], payload: bytes
    ) -> None:
        response = await client.post(
            URL,
            content=payload,
            headers={**auth, "Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert_error(response, 400, "malformed_body")

    @pytest.mark.parametrize(
        "document",
        [{}, {"positions": []}, {"positions": {"a": 1}}, [1, 2], {"items": [1]}],
    )
    async def test_missing_or_empty_positions_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str], document: Any
    ) -> None:
        response = await client.post(URL, json=document, headers=auth)
        error = assert_error(response, 422, "validation_failed")
        assert error["details"][0]["loc"] == ["body", "positions"]

    async def test_blank_ndjson_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            URL, content=b"\n  \n", headers={**auth, "Content-Type": "application/x-ndjson"}
        )
        assert_error(response, 422, "validation_failed")

    @pytest.mark.parametrize(
        ("content_type", "encoding"),
        [("text/plain", "identity"), ("", "identity"), ("application/json", "br")],
    )
    async def test_other_media_types_are_415(
        self, client: httpx.AsyncClient, auth: dict[str, str], content_type: str, encoding: str
    ) -> None:
        response = await client.post(
            URL,
            content=b"{}",
            headers={**auth, "Content-Type": content_type, "Content-Encoding": encoding},
        )
        assert_error(response, 415, "unsupported_media_type")

    async def test_nothing_is_read_before_the_key_is_checked(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post(URL, content=b"{nope", headers={"Content-Type": "text/csv"})
        assert_error(response, 401, "unauthorized")

    async def test_bad_idempotency_key_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str], device: Device, fixes: Fixes
    ) -> None:
        response = await push(client, auth, fixes(device, 1), **{"Idempotency-Key": "x" * 256})
        assert_error(response, 422, "validation_failed")
