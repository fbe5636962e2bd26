"""Console single sign-on against a real OpenID provider run by the test
(``oidc-provider-mock``: authorization code flow, signed ID tokens, discovery)."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from admin_support import audit_entries
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_admin.main import create_app
from milepost_admin.settings import AdminSettings
from milepost_common.db import Database
from milepost_common.domain.users.models import PlatformRole
from milepost_common.testing.factories import make_operator
from milepost_common.testing.plugin import app_client

with warnings.catch_warnings():
    # The mock provider is built on authlib's (deprecated) jose module.
    from authlib.deprecate import AuthlibDeprecationWarning

    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    import oidc_provider_mock

ROLE_CLAIM = "milepost_role"
# The provider (in a thread of this process) uses authlib APIs that authlib deprecates.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    with oidc_provider_mock.run_server_in_thread(require_nonce=True) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
async def sso_client(
    provider: str,
    settings_factory: Callable[..., AdminSettings],
    database: Database,
    redis: Redis,
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_factory(
        AdminSettings,
        oidc={
            "issuer": provider,
            "client_id": "milepost-admin",
            "client_secret": "client-secret",
            "role_claim": ROLE_CLAIM,
        },
    )
    async with app_client(create_app(settings), database) as client:
        yield client


async def _sign_in(
    client: httpx.AsyncClient, provider: str, claims: dict[str, object]
) -> httpx.Response:
    """Through the provider's consent form, as a browser would, back to our callback."""
    async with httpx.AsyncClient() as browser:
        sub = str(claims["email"])
        assert (await browser.put(f"{provider}/users/{sub}", json=claims)).status_code == 204
        start = await client.get("/admin/login/sso", params={"next": "/admin/audit-log"})
        assert start.status_code == 302
        authorize_url = start.headers["location"]
        assert authorize_url.startswith(provider)
        consent = await browser.post(authorize_url, data={"sub": sub})
        assert consent.status_code == 302
        callback = urlparse(consent.headers["location"])
    assert callback.path == "/admin/login/sso/callback"
    assert "code" in parse_qs(callback.query)
    return await client.get(f"{callback.path}?{callback.query}")


class TestSingleSignOn:
    async def test_operator_signs_in_and_role_follows_the_claim(
        self, sso_client: httpx.AsyncClient, provider: str, session: AsyncSession
    ) -> None:
        operator = await make_operator(session, role=PlatformRole.SUPPORT)

        response = await _sign_in(
            sso_client, provider, {"email": operator.email, ROLE_CLAIM: "operator"}
        )

        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/admin/audit-log"
        assert (await sso_client.get("/admin/audit-log")).status_code == 200
        [login] = await audit_entries(session, "auth.login")
        assert login.diff["method"] == "oidc"
        assert login.actor_id == operator.id
        await session.refresh(operator)
        assert operator.platform_role == PlatformRole.OPERATOR

    async def test_unknown_email_is_refused(
        self, sso_client: httpx.AsyncClient, provider: str, session: AsyncSession
    ) -> None:
        response = await _sign_in(sso_client, provider, {"email": "stranger@example.com"})

        assert response.status_code == 401
        assert "no active operator" in response.text
        [failed] = await audit_entries(session, "auth.login_failed")
        assert failed.diff["method"] == "oidc"
        assert (await sso_client.get("/admin/")).status_code == 303

    async def test_callback_without_the_started_flow_is_refused(
        self, sso_client: httpx.AsyncClient
    ) -> None:
        response = await sso_client.get(
            "/admin/login/sso/callback", params={"code": "forged", "state": "forged"}
        )

        assert response.status_code == 401
