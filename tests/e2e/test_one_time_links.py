"""One-time tokens never reach the gateway's access log: the links an operator creates
carry the token in the fragment (a browser opening one sends only the path), and it is
redeemed in a request body."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from milepost_devstack.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

NEW_PASSWORD = "a long enough new password"


def operator_headers(stack: Stack, gateway: httpx.Client) -> dict[str, str]:
    credentials = stack.credentials()
    login = {"username": credentials.operator_email, "password": credentials.operator_password}
    token = gateway.post("/admin/v1/auth/token", data=login).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def open_and_redeem(gateway: httpx.Client, link: str, redeem_path: str) -> str:
    """Open the link as a browser does (path and query; never the fragment), then redeem
    its token the way the page does; returns the token."""
    parts = urlsplit(link)
    token = (parse_qs(parts.query) | parse_qs(parts.fragment))["token"][0]
    gateway.get(f"{parts.path}?{parts.query}" if parts.query else parts.path)
    redeemed = gateway.post(redeem_path, json={"token": token, "password": NEW_PASSWORD})
    assert redeemed.status_code == 204, redeemed.text
    return token


def logged_once(log: Path, path: str, timeout_s: float = 10.0) -> str:
    """The log's text once a line for ``path`` is in it (the access log is written after the
    answer)."""
    deadline = time.monotonic() + timeout_s
    while path not in (text := log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert path in text
    return text


class TestOneTimeLinks:
    def test_no_access_log_line_holds_a_one_time_token(
        self, stack: Stack, gateway: httpx.Client
    ) -> None:
        headers = operator_headers(stack, gateway)
        org = gateway.post("/admin/v1/organizations", json={"name": "Links"}, headers=headers)
        email = f"invitee-{uuid.uuid4().hex[:8]}@example.com"
        invited = gateway.post(
            f"/admin/v1/organizations/{org.json()['id']}/users",
            json={"email": email, "role": "viewer"},
            headers=headers,
        ).json()

        invitation = open_and_redeem(
            gateway, invited["invite_url"], "/api/v1/auth/invitations/accept"
        )
        reset = gateway.post(f"/admin/v1/users/{invited['id']}/reset-password", headers=headers)
        reset_token = open_and_redeem(
            gateway, reset.json()["reset_url"], "/api/v1/auth/password-reset"
        )

        logged = logged_once(stack.config.log_dir / "traefik.log", "/api/v1/auth/password-reset")
        assert invitation not in logged
        assert reset_token not in logged
        assert "mpot_" not in logged
