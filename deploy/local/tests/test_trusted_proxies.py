"""Whom each deployment trusts for a client's address, rendered from the committed files.

The apps take the client's address from X-Forwarded-For only when the connection comes from
their gateway (uvicorn's proxy headers, with each app's FORWARDED_ALLOW_IPS); the gateway
trusts nothing in front of it and sends the connection's own address. Per-IP limits (the
login throttle) and the audit log depend on both: trusting too little makes the whole
internet one client, trusting too much lets a client pick its own address.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from app_support import APPS, SETTINGS, client_seen_by_app, load_settings

from milepost_common.settings import HttpSettings
from milepost_devstack import traefik
from milepost_devstack.config import Ports, StackConfig
from milepost_devstack.net import LOOPBACK
from milepost_devstack.stack import Stack

REPO = Path(__file__).resolve().parents[3]
OUTSIDE = "203.0.113.7"  # TEST-NET-3: a client on the internet
SPOOFED = "198.51.100.9"  # the address a client would like to be taken for


def interpolate(value: str) -> str:
    """Compose's `${NAME:-default}` with nothing set, as a bare `docker compose up` sees it."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def app_http(app: str, environ: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The app's HTTP settings as it loads them from exactly `environ`."""
    http = getattr(load_settings(SETTINGS[app], environ, monkeypatch), app)
    assert isinstance(http, HttpSettings)
    return http


def entry_point_forwarded_headers(config: Mapping[str, Any]) -> dict[str, Any]:
    headers: dict[str, Any] = config["entryPoints"]["web"]["forwardedHeaders"]
    return headers


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def compose_subnet(compose: dict[str, Any]) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    [pool] = compose["networks"]["default"]["ipam"]["config"]
    return ipaddress.ip_network(pool["subnet"])


class TestCompose:
    def test_network_has_a_fixed_private_subnet(
        self, compose_subnet: ipaddress.IPv4Network | ipaddress.IPv6Network
    ) -> None:
        assert compose_subnet.is_private
        assert compose_subnet.num_addresses >= 16

    @pytest.mark.parametrize("app", sorted(APPS))
    async def test_app_trusts_the_gateway_on_the_network_and_no_one_else(
        self,
        compose: dict[str, Any],
        compose_subnet: ipaddress.IPv4Network | ipaddress.IPv6Network,
        monkeypatch: pytest.MonkeyPatch,
        app: str,
    ) -> None:
        environ = {
            name: interpolate(str(value))
            for name, value in compose["services"][app]["environment"].items()
        }
        allowed = app_http(app, environ, monkeypatch).forwarded_allow_ips
        gateway = str(compose_subnet.network_address + 2)

        assert ipaddress.ip_network(allowed) == compose_subnet
        assert await client_seen_by_app(allowed, gateway, OUTSIDE) == OUTSIDE
        assert await client_seen_by_app(allowed, OUTSIDE, SPOOFED) == OUTSIDE

    def test_gateway_trusts_no_forwarded_headers(self) -> None:
        config = tomllib.loads((REPO / "deploy" / "traefik" / "traefik.toml").read_text())

        assert entry_point_forwarded_headers(config) == {"insecure": False, "trustedIPs": []}


class TestMakeUp:
    @pytest.fixture
    def process_env(self, tmp_path: Path) -> dict[str, str]:
        # Even a developer's shell that trusts everyone does not change the stack's topology.
        inherited = {"PATH": "/usr/bin", "MILEPOST_API__FORWARDED_ALLOW_IPS": "*"}
        stack = Stack(StackConfig(tmp_path / "state", Ports()), environ=inherited)
        return stack.process_env(stack.credentials())

    @pytest.mark.parametrize("app", sorted(APPS))
    async def test_app_trusts_the_gateway_on_loopback_only(
        self, process_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, app: str
    ) -> None:
        allowed = app_http(app, process_env, monkeypatch).forwarded_allow_ips

        assert allowed == LOOPBACK
        # Traefik connects from 127.0.0.1 and names the client's own loopback address.
        assert await client_seen_by_app(allowed, LOOPBACK, "127.0.0.2") == "127.0.0.2"
        assert await client_seen_by_app(allowed, "127.0.0.3", SPOOFED) == "127.0.0.3"

    def test_gateway_trusts_no_forwarded_headers(self, tmp_path: Path) -> None:
        rendered = traefik.render_static_config(tmp_path / "traefik.yml", 18080, 18090)

        config = json.loads(rendered.read_text())

        assert entry_point_forwarded_headers(config) == {"insecure": False, "trustedIPs": []}
