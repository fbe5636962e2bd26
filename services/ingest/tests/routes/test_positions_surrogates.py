"""``POST /ingest/v1/positions`` with a lone UTF-16 surrogate escape in a string (``\\ud83d``,
an emoji cut in half by a writer that truncates UTF-16): no JSON parser takes the document,
and one such string refused the whole batch with 400. Read as U+FFFD, the fixes are stored."""

from __future__ import annotations

import gzip

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.devices.models import Device
from services.ingest.tests.routes.positions_support import URL, Fixes, stored

TRUNCATED_EMOJI = "\\ud83d"  # as it stands in the JSON text: the first half of a pair


def with_text(item: dict[str, object], name: str) -> bytes:
    """The item's JSON with its attribute ``name`` holding a lone surrogate escape."""
    return orjson.dumps({**item, "attributes": {name: "@@"}}).replace(
        b"@@", f"Driver {TRUNCATED_EMOJI}".encode()
    )


class TestLoneSurrogates:
    async def test_a_json_batch_is_stored_with_the_replacement_character(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        device: Device,
        fixes: Fixes,
        session: AsyncSession,
    ) -> None:
        good, odd = fixes(device, 2)
        body = b'{"positions": [' + orjson.dumps(good) + b"," + with_text(odd, "note") + b"]}"

        response = await client.post(
            URL, content=body, headers={**auth, "Content-Type": "application/json"}
        )

        assert response.status_code == 202, response.text
        assert (response.json()["accepted"], response.json()["rejected"]) == (2, 0)
        rows = await stored(session, response.json()["batch_id"])
        assert sorted(row.attributes.get("note", "") for row in rows) == ["", "Driver \ufffd"]

    async def test_an_ndjson_line_is_stored_with_the_replacement_character(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        device: Device,
        fixes: Fixes,
        session: AsyncSession,
    ) -> None:
        good, odd = fixes(device, 2)
        lines = orjson.dumps(good) + b"\n" + with_text(odd, "note")

        response = await client.post(
            URL,
            content=gzip.compress(lines),
            headers={**auth, "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
        )

        assert response.status_code == 202, response.text
        assert (response.json()["accepted"], response.json()["rejected"]) == (2, 0)
        rows = await stored(session, response.json()["batch_id"])
        assert "Driver \ufffd" in [row.attributes.get("note") for row in rows]

    async def test_a_device_id_with_one_is_an_unknown_device_not_a_failed_batch(
        self, client: httpx.AsyncClient, auth: dict[str, str], device: Device, fixes: Fixes
    ) -> None:
        good, odd = fixes(device, 2)
        named = orjson.dumps({**odd, "device_id": "@@"}).replace(b"@@", TRUNCATED_EMOJI.encode())
        body = b'{"positions": [' + orjson.dumps(good) + b"," + named + b"]}"

        response = await client.post(
            URL, content=body, headers={**auth, "Content-Type": "application/json"}
        )

        assert response.status_code == 202, response.text
        answer = response.json()
        assert (answer["accepted"], answer["rejected"]) == (1, 1)
        assert answer["errors"][0]["index"] == 1
        assert answer["errors"][0]["code"] == "unknown_device"
