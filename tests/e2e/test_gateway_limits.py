"""Through the real gateway of `make up`: bodies over the apps' limits are refused there."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

MIB = 1024 * 1024


def chunked(total: int) -> Iterator[bytes]:
    """A JSON body sent in 64 KiB chunks, without a Content-Length."""
    yield b'{"refresh_token": "'
    for _ in range(total // (64 * 1024)):
        yield b"x" * 64 * 1024
    yield b'"}'


def assert_refused_by_the_gateway(response: httpx.Response) -> None:
    """Traefik's own 413: plain text, no request id (the app's would be the envelope)."""
    assert "X-Request-ID" not in response.headers
    assert not response.text.startswith("{")


class TestBodyLimit:
    def test_fifty_mib_to_an_unauthenticated_route_is_refused_quickly(
        self, gateway: httpx.Client
    ) -> None:
        started = time.monotonic()

        response = gateway.post(
            "/api/v1/auth/refresh",
            content=chunked(50 * MIB),
            headers={"Content-Type": "application/json"},
        )

        assert response.status_code == 413
        assert time.monotonic() - started < 10
        assert_refused_by_the_gateway(response)

    def test_declared_length_over_the_limit_is_refused(self, gateway: httpx.Client) -> None:
        response = gateway.post(
            "/admin/v1/auth/token",
            content=b"x" * (MIB + 1),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

        assert response.status_code == 413
        assert_refused_by_the_gateway(response)
