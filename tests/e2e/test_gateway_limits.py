"""Through the real gateway of `make up`: body limits, and clients told apart by address.

Each client below binds its own loopback source address (127.0.0.2, 127.0.0.3): Traefik
sees that address, forwards it in X-Forwarded-For, and the apps trust that header from the
gateway alone, so per-address limits count each client on its own.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from milepost_devstack.stack import Stack
from tests.e2e.journey_support import create_tenant, operator_client

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

MIB = 1024 * 1024
LOCKED_OUT = "127.0.0.2"
OTHER = "127.0.0.3"
# More failed logins than the e2e stack's per-address limit lets through in a minute.
FAILED_LOGINS = 40


def client_from(stack: Stack, address: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=stack.gateway_url, transport=transport, timeout=30)


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


def close_code(ws: ClientConnection, within_s: float = 30) -> int | None:
    """The code the server closes with, after any messages still on their way (pings
    included); None when it has not closed within ``within_s``."""
    deadline = time.monotonic() + within_s
    try:
        while (left := deadline - time.monotonic()) > 0:
            ws.recv(timeout=left)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    except TimeoutError:
        pass
    return None


class TestStreamMessageLimit:
    def test_a_message_over_1_mib_closes_the_stream_with_1009(self, stack: Stack) -> None:
        """The largest subscription (10,000 ids, ~400 KB) is followed; a 2 MiB message
        closes the stream with 1009 (too big) before the api reads it."""
        with operator_client(stack) as operator:
            tenant = create_tenant(stack, operator, f"Stream limit {uuid.uuid4().hex[:6]}", [])
        url = stack.gateway_url.replace("http://", "ws://", 1) + "/api/v1/stream"
        with tenant, connect(url, open_timeout=30) as ws:
            ws.send(json.dumps({"type": "auth", "token": tenant.owner_token}))
            assert json.loads(ws.recv(timeout=30)) == {"type": "ready"}
            largest = [str(uuid.uuid4()) for _ in range(10_000)]
            ws.send(json.dumps({"type": "subscribe", "vehicle_ids": largest}))
            assert json.loads(ws.recv(timeout=30)) == {"type": "subscribed", "vehicle_ids": []}

            ws.send(json.dumps({"type": "subscribe", "vehicle_ids": ["x" * 2 * MIB]}))
            assert close_code(ws) == 1009


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


class TestClientAddresses:
    def test_a_client_locked_out_of_login_does_not_lock_out_another(self, stack: Stack) -> None:
        credentials = stack.credentials()
        operator = {
            "username": credentials.operator_email,
            "password": credentials.operator_password,
        }
        with client_from(stack, LOCKED_OUT) as locked, client_from(stack, OTHER) as other:

            def fail_once(_: int) -> int:
                wrong = {"username": f"nobody-{uuid.uuid4().hex}@example.com", "password": "x"}
                return locked.post("/admin/v1/auth/token", data=wrong).status_code

            with ThreadPoolExecutor(max_workers=4) as pool:
                failures = list(pool.map(fail_once, range(FAILED_LOGINS)))
            # Another client's address in the header changes nothing: the gateway drops it.
            spoofing = locked.post(
                "/admin/v1/auth/token", data=operator, headers={"X-Forwarded-For": OTHER}
            )
            other_login = other.post("/admin/v1/auth/token", data=operator)

        assert set(failures) == {401, 429}
        assert spoofing.status_code == 429
        assert other_login.status_code == 200, other_login.text
        self.assert_audited_from(stack, other_login, OTHER)

    @staticmethod
    def assert_audited_from(stack: Stack, login: httpx.Response, address: str) -> None:
        """The audit entry of `login` names the client's address, not the gateway's."""
        bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
        with httpx.Client(base_url=stack.gateway_url, headers=bearer, timeout=10) as client:
            entries = client.get(
                "/admin/v1/audit-log", params={"action": "auth.login", "limit": 1000}
            ).json()["items"]

        [entry] = [e for e in entries if e["request_id"] == login.headers["X-Request-ID"]]
        assert entry["ip"] == address
