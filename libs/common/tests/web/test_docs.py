"""The API docs each app serves itself (Swagger UI, ReDoc), its index and its 404s."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from milepost_common.settings import CommonSettings
from milepost_common.testing.plugin import app_client
from milepost_common.web.docs import REDOC, SWAGGER_UI
from milepost_common.web.pages import KIT_STATIC

from .conftest import build_app


@pytest.fixture
async def kit(kit_settings: CommonSettings) -> AsyncIterator[httpx.AsyncClient]:
    # Nothing here reaches the database: the app's own (never connected) engine is kept.
    async with app_client(build_app(kit_settings)) as client:
        yield client


def csp_of(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in policy.split(";"))


def assets_of(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


class TestSwaggerUi:
    async def test_page_loads_only_the_apps_own_files(self, kit: httpx.AsyncClient) -> None:
        response = await kit.get("/kit/docs")

        assert response.status_code == 200
        assets = assets_of(response.text)
        assert f"/kit/docs/static/{SWAGGER_UI}/swagger-ui-bundle.js" in assets
        assert all(asset.startswith("/") for asset in assets)
        assert 'data-openapi-url="/kit/openapi.json"' in response.text
        assert "<script>" not in response.text
        for asset in assets:
            if asset != "/favicon.ico":
                assert (await kit.get(asset)).status_code == 200, asset

    async def test_csp_allows_only_self(self, kit: httpx.AsyncClient) -> None:
        csp = csp_of(await kit.get("/kit/docs"))

        assert csp["default-src"] == "'self'"
        assert csp["script-src"] == "'self'"
        assert csp["style-src"] == "'self'"
        assert csp["connect-src"] == "'self'"

    async def test_docs_are_not_operations(self, kit: httpx.AsyncClient) -> None:
        paths = (await kit.get("/kit/openapi.json")).json()["paths"]

        assert not [path for path in paths if "docs" in path or "redoc" in path]


class TestRedoc:
    async def test_page_loads_only_the_apps_own_files(self, kit: httpx.AsyncClient) -> None:
        response = await kit.get("/kit/redoc")

        assert response.status_code == 200
        assert f"/kit/docs/static/{REDOC}/redoc.standalone.js" in assets_of(response.text)
        assert all(asset.startswith("/") for asset in assets_of(response.text))

    async def test_runtime_styles_need_this_answers_nonce(self, kit: httpx.AsyncClient) -> None:
        first, second = await kit.get("/kit/redoc"), await kit.get("/kit/redoc")

        nonce = re.search(r'data-nonce="([^"]+)"', first.text)
        assert nonce is not None
        assert csp_of(first)["style-src"] == f"'self' 'nonce-{nonce.group(1)}'"
        assert csp_of(first)["style-src"] != csp_of(second)["style-src"]
        assert csp_of(first)["script-src"] == "'self'"


class TestVendoredFiles:
    @pytest.mark.parametrize("folder", [SWAGGER_UI, REDOC])
    def test_files_are_the_pinned_ones_with_their_licence(self, folder: str) -> None:
        root = KIT_STATIC / folder
        sums = (root / "SHA256SUMS").read_text().splitlines()
        listed = {}
        for line in sums:
            digest, name = line.split()
            listed[name] = digest

        assert "LICENSE" in listed
        for name, digest in listed.items():
            assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest, name


class TestIndex:
    @pytest.mark.parametrize("path", ["/kit", "/kit/"])
    async def test_a_client_gets_the_links(self, kit: httpx.AsyncClient, path: str) -> None:
        response = await kit.get(path, headers={"Accept": "application/json"})

        assert response.status_code == 200
        assert response.json()["docs"] == "/kit/docs"
        assert response.json()["openapi"] == "/kit/openapi.json"

    async def test_a_browser_is_sent_to_the_docs(self, kit: httpx.AsyncClient) -> None:
        response = await kit.get("/kit/", headers={"Accept": "text/html,*/*;q=0.8"})

        assert response.status_code == 307
        assert response.headers["location"] == "/kit/docs"

    async def test_an_unknown_route_points_to_the_docs(self, kit: httpx.AsyncClient) -> None:
        response = await kit.get("/kit/v2/nothing")

        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        assert "/kit/docs" in response.json()["error"]["message"]
