"""The edge middleware, one layer for what every answer carries: the request id, the security
headers, compression for a client that asks (and `Vary: Accept-Encoding` for one that does
not), and the host check when some host is not trusted."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.responses import Response

from milepost_common.db import Database
from milepost_common.settings import CommonSettings, HttpSettings
from milepost_common.testing.plugin import app_client
from milepost_common.web.app import AppSpec, create_base_app

router = APIRouter(prefix="/v1")
LARGE = orjson.dumps({"items": [{"n": n, "name": f"vehicle {n}"} for n in range(200)]})


@router.get("/large")
async def large() -> Response:
    return Response(LARGE, media_type="application/json")


@router.get("/framed")
async def framed() -> Response:
    # A page that sets a header the edge also sets: the page's own wins.
    return Response(b"{}", media_type="application/json", headers={"X-Frame-Options": "SAMEORIGIN"})


def edge_app(settings: CommonSettings, **http: Any) -> Any:
    spec = AppSpec(
        name="kit", title="kit", description="", routers=(router,), http=HttpSettings(**http)
    )
    return create_base_app(settings, spec)


async def test_a_large_answer_is_compressed_for_a_client_that_asks(
    kit_settings: CommonSettings, database: Database
) -> None:
    async with app_client(edge_app(kit_settings), database) as client:
        response = await client.get("/kit/v1/large", headers={"Accept-Encoding": "gzip"})
        async with client.stream(
            "GET", "/kit/v1/large", headers={"Accept-Encoding": "gzip"}
        ) as raw:
            body = b"".join([chunk async for chunk in raw.aiter_raw()])
    assert response.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in response.headers["Vary"]
    assert response.content == LARGE  # httpx decoded it
    assert gzip.decompress(body) == LARGE
    assert int(raw.headers["Content-Length"]) == len(body) < len(LARGE)
    assert raw.headers["X-Request-ID"]
    assert raw.headers["X-Content-Type-Options"] == "nosniff"


async def test_an_uncompressed_answer_says_it_varies_by_accept_encoding(
    kit_settings: CommonSettings, database: Database
) -> None:
    async with app_client(edge_app(kit_settings), database) as client:
        large = await client.get("/kit/v1/large", headers={"Accept-Encoding": "identity"})
        small = await client.get("/kit/health", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in large.headers
    assert large.content == LARGE
    assert large.headers["Vary"] == "Accept-Encoding"
    # Too small to compress for anyone: nothing varies.
    assert "Vary" not in small.headers


async def test_a_small_answer_is_never_compressed(
    kit_settings: CommonSettings, database: Database
) -> None:
    async with app_client(edge_app(kit_settings), database) as client:
        response = await client.get("/kit/health", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in response.headers
    assert response.json() == {"status": "ok"}


async def test_every_answer_carries_the_security_headers_without_overriding_the_page_s(
    kit_settings: CommonSettings, database: Database
) -> None:
    async with app_client(edge_app(kit_settings), database) as client:
        framed = await client.get("/kit/v1/framed")
        missing = await client.get("/kit/v1/nothing-here")
    assert framed.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert framed.headers["Referrer-Policy"] == "no-referrer"
    for response in (framed, missing):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert len(response.headers["X-Request-ID"]) == 32


async def test_an_untrusted_host_is_refused_with_the_edge_s_headers(
    kit_settings: CommonSettings, database: Database
) -> None:
    app = edge_app(kit_settings, trusted_hosts=["fleet.example.com"])
    async with app_client(app, database, base_url="http://fleet.example.com") as client:
        trusted = await client.get("/kit/health")
        refused = await client.get("/kit/health", headers={"Host": "elsewhere.example.org"})
    assert trusted.status_code == 200
    assert refused.status_code == 400
    assert refused.text == "Invalid host header"
    assert refused.headers["X-Request-ID"]
    assert refused.headers["X-Frame-Options"] == "DENY"
