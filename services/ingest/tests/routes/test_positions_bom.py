"""``POST /ingest/v1/positions`` with a leading UTF-8 byte order mark (some .NET writers add
one; RFC 8259 lets a parser ignore it): ignored in both formats, after gzip decoding."""

from __future__ import annotations

import gzip

import httpx
import orjson

from milepost_common.domain.devices.models import Device
from services.ingest.tests.routes.positions_support import URL, Fixes

BOM = b"\xef\xbb\xbf"


class TestByteOrderMark:
    async def test_json_with_a_bom_is_stored(
        self, client: httpx.AsyncClient, auth: dict[str, str], device: Device, fixes: Fixes
    ) -> None:
        response = await client.post(
            URL,
            content=BOM + orjson.dumps({"positions": fixes(device, 2)}),
            headers={**auth, "Content-Type": "application/json"},
        )
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == 2

    async def test_gzip_ndjson_with_a_bom_is_stored_whole(
        self, client: httpx.AsyncClient, auth: dict[str, str], device: Device, fixes: Fixes
    ) -> None:
        lines = b"\n".join(orjson.dumps(item) for item in fixes(device, 2))
        response = await client.post(
            URL,
            content=gzip.compress(BOM + lines),
            headers={**auth, "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
        )
        body = response.json()
        assert (body["accepted"], body["rejected"], body["errors"]) == (2, 0, [])

    async def test_only_one_leading_bom_is_ignored(
        self, client: httpx.AsyncClient, auth: dict[str, str], device: Device, fixes: Fixes
    ) -> None:
        lines = b"\n".join(orjson.dumps(item) for item in fixes(device, 2))
        response = await client.post(
            URL,
            content=BOM + BOM + lines,
            headers={**auth, "Content-Type": "application/x-ndjson"},
        )
        body = response.json()
        assert (body["accepted"], body["rejected"]) == (1, 1)
        assert body["errors"][0]["index"] == 0
