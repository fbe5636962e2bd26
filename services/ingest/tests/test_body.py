"""Body limits are enforced while reading: a 30 MB body or a gzip bomb never sits in memory."""

from __future__ import annotations

import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable
from functools import lru_cache

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from milepost_common.db import Database
from milepost_common.domain.ingest_batches.models import BatchSource
from milepost_common.errors import BatchTooLarge
from milepost_common.testing.plugin import app_client
from milepost_ingest.body import parse_items
from milepost_ingest.main import create_app
from milepost_ingest.settings import MIB, IngestSettings

URL = "/ingest/v1/positions"
CHUNK = 256 * 1024


class Sender:
    """A request body sent chunk by chunk, counting what the server pulled."""

    def __init__(self, chunks: list[bytes] | None = None, *, zeros: int = 0) -> None:
        self.chunks = chunks
        self.zeros = zeros
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.chunks is not None:
            for chunk in self.chunks:
                self.pulled += len(chunk)
                yield chunk
            return
        block = b"0" * CHUNK
        for _ in range(self.zeros // CHUNK):
            self.pulled += CHUNK
            yield block


@lru_cache(maxsize=1)
def gzip_bomb(decoded: int = 128 * MIB) -> list[bytes]:
    """``decoded`` bytes of a JSON-looking body, gzip-compressed (about 1000:1)."""
    encoder = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [encoder.compress(b'{"positions": ["')]
    block = b"\x20" * MIB
    out += [encoder.compress(block) for _ in range(decoded // MIB)]
    out.append(encoder.flush())
    data = b"".join(out)
    step = 16 * 1024  # small pieces: show that decoding stops long before the end
    return [data[i : i + step] for i in range(0, len(data), step)]


async def measured(
    client: httpx.AsyncClient, sender: Sender, headers: dict[str, str]
) -> tuple[httpx.Response, int]:
    tracemalloc.start()
    try:
        response = await client.post(URL, content=sender, headers=headers)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return response, peak


class TestBodyLimits:
    async def test_a_30_mb_body_is_refused_while_reading(
        self, client: httpx.AsyncClient, auth: dict[str, str], ingest_settings: IngestSettings
    ) -> None:
        sender = Sender(zeros=30 * MIB)
        response, peak = await measured(
            client, sender, {**auth, "Content-Type": "application/json"}
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        limit = ingest_settings.ingest.max_body_bytes
        assert sender.pulled <= limit + CHUNK  # stopped at the limit, not at 30 MB
        assert peak < limit + 4 * MIB

    async def test_a_declared_oversize_body_is_refused_before_reading(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        sender = Sender(zeros=30 * MIB)
        response = await client.post(
            URL,
            content=sender,
            headers={**auth, "Content-Type": "application/json", "Content-Length": str(30 * MIB)},
        )
        assert response.status_code == 413
        assert sender.pulled == 0

    @pytest.mark.parametrize(
        "url", [URL, "/ingest/osmand/mp_not-a-key?id=x"], ids=["batch", "osmand"]
    )
    async def test_a_declared_oversize_body_is_refused_before_the_key(
        self, client: httpx.AsyncClient, url: str
    ) -> None:
        # DESIGN: every app refuses a body over its limit before authentication (no key here).
        sender = Sender(zeros=30 * MIB)
        response = await client.post(
            url,
            content=sender,
            headers={"Content-Type": "application/json", "Content-Length": str(30 * MIB)},
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        assert sender.pulled == 0

    async def test_a_gzip_bomb_is_refused_while_decoding(
        self, client: httpx.AsyncClient, auth: dict[str, str], ingest_settings: IngestSettings
    ) -> None:
        bomb = gzip_bomb()
        sender = Sender(bomb)
        headers = {**auth, "Content-Type": "application/json", "Content-Encoding": "gzip"}
        response, peak = await measured(client, sender, headers)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        assert sender.pulled < sum(map(len, bomb))  # decoding stopped before the end
        assert peak < ingest_settings.ingest.max_decoded_bytes + 8 * MIB  # not 128 MB

    @pytest.mark.parametrize(
        ("line", "status"), [(b"0\n", 413), (b"\n", 422)], ids=["tiny", "blank"]
    )
    async def test_ndjson_of_millions_of_short_lines_costs_no_copy_per_line(
        self, client: httpx.AsyncClient, auth: dict[str, str], line: bytes, status: int
    ) -> None:
        # 4 MiB decoded (from a few KiB sent): one object per line was ~80 MB, ~1 GB at the
        # 40 MiB decoded limit.
        encoder = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        body = encoder.compress(line * (4 * MIB // len(line))) + encoder.flush()
        headers = {**auth, "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
        response, peak = await measured(client, Sender([body]), headers)
        assert response.status_code == status
        assert peak < 4 * MIB + 8 * MIB

    async def test_json_of_millions_of_tiny_items_costs_no_object_per_item(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        # 4 MiB decoded of `0,` (from a few KiB sent): one object per item was ~110 MB,
        # ~1.4 GB at the 40 MiB decoded limit.
        encoder = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        items = b"0," * (2 * MIB)
        body = encoder.compress(b'{"positions": [' + items + b"0]}") + encoder.flush()
        headers = {**auth, "Content-Type": "application/json", "Content-Encoding": "gzip"}
        response, peak = await measured(client, Sender([body]), headers)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "batch_too_large"
        assert peak < 4 * MIB + 8 * MIB

    @pytest.mark.parametrize("gzip", [False, True])
    async def test_too_many_items_is_batch_too_large(
        self,
        make_settings: Callable[..., IngestSettings],
        database: Database,
        redis: Redis,
        auth: dict[str, str],
        gzip: bool,
    ) -> None:
        app = create_app(make_settings(ingest={"max_items": 3}))
        lines = b"\n".join(b'{"device_id": "x"}' for _ in range(4))
        headers = {**auth, "Content-Type": "application/x-ndjson"}
        if gzip:
            encoder = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
            lines = encoder.compress(lines) + encoder.flush()
            headers["Content-Encoding"] = "gzip"
        async with app_client(app, database) as client:
            response = await client.post(URL, content=lines, headers=headers)
            assert response.status_code == 413
            assert response.json()["error"]["code"] == "batch_too_large"
            json_body = {"positions": [{"device_id": "x"}] * 4}
            response = await client.post(URL, json=json_body, headers=auth)
            assert response.json()["error"]["code"] == "batch_too_large"


class TestParseItems:
    @pytest.mark.parametrize("count", [1, 3])
    def test_items_holding_many_commas_are_counted_exactly(self, count: int) -> None:
        item = orjson.dumps({"device_id": "x", "attributes": {"list": list(range(300))}})
        body = b'{"positions": [' + b", ".join([item] * count) + b"]}"
        parsed = parse_items(body, BatchSource.JSON, max_items=3)
        assert [bytes(raw) for raw in parsed.raws] == [item] * count

    def test_one_item_over_the_limit_is_batch_too_large(self) -> None:
        item = orjson.dumps({"device_id": "x", "attributes": {"list": list(range(300))}})
        body = b'{"positions": [' + b", ".join([item] * 4) + b"]}"
        with pytest.raises(BatchTooLarge):
            parse_items(body, BatchSource.JSON, max_items=3)
