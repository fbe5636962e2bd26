"""The console's map page, the console's CSP built from the tile URL, and the vendored
Leaflet."""

from __future__ import annotations

import hashlib
import uuid
from importlib.resources import files
from typing import Any

import httpx
import pytest
from admin_support import Staff, console_login
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_admin.console.render import content_security_policy
from milepost_admin.settings import AdminSettings
from milepost_common.domain.organizations.models import Organization
from milepost_common.testing.factories import (
    make_organization,
)

LEAFLET = files("milepost_admin") / "static" / "vendor" / "leaflet-1.9.4"


class TestMapPage:
    async def test_renders_for_support_with_the_feed_urls(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org: Organization = await make_organization(session, name="Map Fleet")
        await console_login(client, staff.support)

        response = await client.get(f"/admin/organizations/{org.id}/map")

        assert response.status_code == 200
        html = response.text
        assert f'data-positions-url="/admin/v1/organizations/{org.id}/positions/latest"' in html
        assert "/admin/static/vendor/leaflet-1.9.4/leaflet.js" in html
        assert "/admin/static/map.js" in html
        assert "<script>" not in html  # the CSP allows no inline script

    async def test_the_organization_page_links_to_it(
        self, client: httpx.AsyncClient, session: AsyncSession, staff: Staff
    ) -> None:
        org = await make_organization(session)
        await console_login(client, staff.support)

        response = await client.get(f"/admin/organizations/{org.id}")

        assert f'href="/admin/organizations/{org.id}/map"' in response.text

    async def test_unknown_organization_is_a_404_page(
        self, client: httpx.AsyncClient, staff: Staff
    ) -> None:
        await console_login(client, staff.support)

        response = await client.get(f"/admin/organizations/{uuid.uuid4()}/map")

        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")

    async def test_without_a_session_it_sends_to_login(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"/admin/organizations/{uuid.uuid4()}/map")

        assert response.status_code == 303
        assert response.headers["location"].startswith("/admin/login?next=")


class TestContentSecurityPolicy:
    async def test_img_src_follows_the_tile_url(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        staff: Staff,
        admin_settings: AdminSettings,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        org = await make_organization(session)
        await console_login(client, staff.support)
        url = f"/admin/organizations/{org.id}/map"
        tiles = "https://{s}.tiles.example.net:8443/osm/{z}/{x}/{y}.png"

        monkeypatch.setattr(admin_settings.admin, "map_tile_url", tiles)
        with_tiles = await client.get(url)
        monkeypatch.setattr(admin_settings.admin, "map_tile_url", "")
        without = await client.get(url)

        assert (
            "img-src 'self' data: https://*.tiles.example.net:8443;"
            in (with_tiles.headers["content-security-policy"])
        )
        assert 'data-tile-url="https://{s}.tiles.example.net:8443/osm/{z}/{x}/{y}.png"' in (
            with_tiles.text
        )
        assert "img-src 'self' data:;" in without.headers["content-security-policy"]
        assert "script-src 'self';" in without.headers["content-security-policy"]
        assert 'data-tile-url=""' in without.text

    def test_the_default_is_openstreetmaps_origin(self) -> None:
        default = AdminSettings.model_fields["admin"].default.map_tile_url

        assert "img-src 'self' data: https://tile.openstreetmap.org;" in (
            content_security_policy(default)
        )

    @pytest.mark.parametrize(
        "url",
        [
            "ftp://tiles.example.net/{z}/{x}/{y}.png",
            "https://tiles.example.net/tiles.png",
            "https://tiles-{s}.example.net/{z}/{x}/{y}.png",
            "https://user@tiles.example.net/{z}/{x}/{y}.png",
            "tiles.example.net/{z}/{x}/{y}.png",
        ],
    )
    def test_a_bad_tile_url_is_refused_at_start(self, settings_factory: Any, url: str) -> None:
        with pytest.raises(ValueError, match="map_tile_url"):
            settings_factory(AdminSettings, admin={"map_tile_url": url})


class TestVendoredLeaflet:
    def test_files_match_their_pinned_digests(self) -> None:
        sums = (LEAFLET / "SHA256SUMS").read_text().splitlines()

        assert len(sums) == 8
        for line in sums:
            digest, name = line.split()
            assert hashlib.sha256((LEAFLET / name).read_bytes()).hexdigest() == digest, name
        assert "BSD 2-Clause License" in (LEAFLET / "LICENSE").read_text()

    async def test_served_by_the_app(self, client: httpx.AsyncClient) -> None:
        script = await client.get("/admin/static/vendor/leaflet-1.9.4/leaflet.js")
        icon = await client.get("/admin/static/vendor/leaflet-1.9.4/images/marker-icon.png")

        assert script.status_code == 200
        assert 'version="1.9.4"' in script.text
        assert icon.headers["content-type"] == "image/png"
