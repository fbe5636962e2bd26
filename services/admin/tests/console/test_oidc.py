"""Console single sign-on against a real OpenID provider run by the test
(``oidc-provider-mock``: authorization code flow, signed ID tokens, discovery), behind a
PKCE check the mock lacks (RFC 7636: S256 challenge required, code exchanged only with its
verifier)."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import werkzeug.serving
from admin_support import audit_entries, submit_login
from itsdangerous import BadSignature, TimestampSigner
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_admin.main import create_app
from milepost_admin.settings import AdminSettings
from milepost_common.db import Database
from milepost_common.domain.users.models import PlatformRole
from milepost_common.testing.factories import DEFAULT_PASSWORD, make_operator
from milepost_common.testing.plugin import app_client

with warnings.catch_warnings():
    # The mock provider is built on authlib's (deprecated) jose module.
    from authlib.deprecate import AuthlibDeprecationWarning

    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    import oidc_provider_mock

ROLE_CLAIM = "milepost_role"
# The provider (in a thread of this process) uses authlib APIs that authlib deprecates.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


@dataclass
class PkceProvider:
    """The mock provider's WSGI app, refusing authorization requests without an S256
    challenge and code exchanges whose verifier does not match it."""

    app: WsgiApp
    challenges: dict[str, str] = field(default_factory=dict)  # code -> challenge
    verified: list[str] = field(default_factory=list)  # codes exchanged with their verifier

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
        if path == "/oauth2/authorize" and method == "POST":
            query = parse_qs(environ["QUERY_STRING"])
            challenge = query.get("code_challenge", [""])[0]
            if query.get("code_challenge_method") != ["S256"] or len(challenge) != 43:
                return self._refuse(start_response, "invalid_request")

            def remember(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
                location = dict(headers).get("Location", "")
                for code in parse_qs(urlparse(location).query).get("code", []):
                    self.challenges[code] = challenge
                return start_response(status, headers, *rest)

            return self.app(environ, remember)
        if path == "/oauth2/token":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            form = parse_qs(body.decode())
            if form.get("grant_type") == ["authorization_code"]:
                code = form.get("code", [""])[0]
                challenge = self.challenges.pop(code, None)
                verifier = form.get("code_verifier", [""])[0]
                if challenge is None or s256(verifier) != challenge:
                    return self._refuse(start_response, "invalid_grant")
                self.verified.append(code)
        return self.app(environ, start_response)

    @staticmethod
    def _refuse(start_response: Callable[..., Any], error: str) -> list[bytes]:
        start_response("400 Bad Request", [("Content-Type", "application/json")])
        return [f'{{"error": "{error}"}}'.encode()]


@dataclass(frozen=True)
class Provider:
    url: str
    pkce: PkceProvider


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    pkce = PkceProvider(oidc_provider_mock.app(require_nonce=True))
    server = werkzeug.serving.make_server("localhost", 0, pkce, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.1,))
    thread.start()
    try:
        yield Provider(f"http://localhost:{server.server_port}", pkce)
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


def sso_settings(
    settings_factory: Callable[..., AdminSettings],
    provider: Provider,
    auth: dict[str, Any] | None = None,
    **oidc: Any,
) -> AdminSettings:
    return settings_factory(
        AdminSettings,
        auth=auth or {},
        oidc={
            "issuer": provider.url,
            "client_id": "milepost-admin",
            "client_secret": "client-secret",
            "role_claim": ROLE_CLAIM,
            **oidc,
        },
    )


@pytest.fixture
async def sso_client(
    provider: Provider,
    settings_factory: Callable[..., AdminSettings],
    database: Database,
    redis: Redis,
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(create_app(sso_settings(settings_factory, provider)), database) as c:
        yield c


@dataclass(frozen=True)
class SignIn:
    response: httpx.Response
    authorize_url: str
    code: str


async def _sign_in(
    client: httpx.AsyncClient,
    provider: Provider,
    claims: dict[str, object],
    *,
    sub: str | None = None,
) -> SignIn:
    """Through the provider's consent form, as a browser would, back to our callback.
    ``sub`` is the provider's subject (default: the email)."""
    async with httpx.AsyncClient() as browser:
        sub = sub or str(claims["email"])
        assert (await browser.put(f"{provider.url}/users/{sub}", json=claims)).status_code == 204
        start = await client.get("/admin/login/sso", params={"next": "/admin/audit-log"})
        assert start.status_code == 302
        authorize_url = start.headers["location"]
        assert authorize_url.startswith(provider.url)
        consent = await browser.post(authorize_url, data={"sub": sub})
        assert consent.status_code == 302, consent.text
        callback = urlparse(consent.headers["location"])
    assert callback.path == "/admin/login/sso/callback"
    [code] = parse_qs(callback.query)["code"]
    response = await client.get(f"{callback.path}?{callback.query}")
    return SignIn(response, authorize_url, code)


def verified(email: str, **claims: object) -> dict[str, object]:
    return {"email": email, "email_verified": True, **claims}


async def signed_in(client: httpx.AsyncClient) -> bool:
    return (await client.get("/admin/audit-log")).status_code == 200


class TestSingleSignOn:
    async def test_operator_signs_in_and_role_follows_the_claim(
        self, sso_client: httpx.AsyncClient, provider: Provider, session: AsyncSession
    ) -> None:
        operator = await make_operator(session, role=PlatformRole.SUPPORT)

        signed = await _sign_in(
            sso_client, provider, verified(operator.email, **{ROLE_CLAIM: "operator"})
        )

        assert signed.response.status_code == 303, signed.response.text
        assert signed.response.headers["location"] == "/admin/audit-log"
        assert await signed_in(sso_client)
        [login] = await audit_entries(session, "auth.login")
        assert login.diff["method"] == "oidc"
        assert login.actor_id == operator.id
        await session.refresh(operator)
        assert operator.platform_role == PlatformRole.OPERATOR

    async def test_unknown_email_is_refused(
        self, sso_client: httpx.AsyncClient, provider: Provider, session: AsyncSession
    ) -> None:
        signed = await _sign_in(sso_client, provider, verified("stranger@example.com"))

        assert signed.response.status_code == 401
        assert "no active operator" in signed.response.text
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

    async def test_a_forged_error_link_cannot_put_its_words_on_the_login_page(
        self, sso_client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        # Anyone can write a link to the callback with an error of their own: the console's
        # genuine login page must not say what the link says.
        lure = "Your account is locked: call +1 555 0100 and give your password"
        response = await sso_client.get(
            "/admin/login/sso/callback",
            params={"error": "access_denied", "error_description": lure},
        )

        assert response.status_code == 401
        assert "call +1 555 0100" not in response.text
        assert "Single sign-on failed: the provider refused the login" in response.text
        [failed] = await audit_entries(session, "auth.login_failed")
        assert "call +1 555 0100" not in str(failed.diff)


class TestThrottle:
    @pytest.fixture
    async def throttled_client(
        self,
        provider: Provider,
        settings_factory: Callable[..., AdminSettings],
        database: Database,
        redis: Redis,
    ) -> AsyncIterator[httpx.AsyncClient]:
        # One attempt a minute per email: five per client IP.
        settings = sso_settings(settings_factory, provider, auth={"login_attempts_per_minute": 1})
        async with app_client(create_app(settings), database) as client:
            yield client

    @staticmethod
    async def forged(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get(
            "/admin/login/sso/callback", params={"code": "forged", "state": "forged"}
        )

    async def test_forged_callbacks_stop_writing_audit_rows_once_the_ip_budget_is_spent(
        self, throttled_client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        responses = [await self.forged(throttled_client) for _ in range(8)]

        assert [response.status_code for response in responses] == [401] * 5 + [429] * 3
        throttled = responses[-1]
        assert "Too many failed login attempts" in throttled.text
        assert 0 < int(throttled.headers["Retry-After"]) <= 60
        assert len(await audit_entries(session, "auth.login_failed")) == 5

    async def test_sso_failures_spend_the_budget_of_password_logins(
        self, throttled_client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        operator = await make_operator(session)
        for _ in range(5):
            assert (await self.forged(throttled_client)).status_code == 401

        response = await submit_login(throttled_client, operator.email, DEFAULT_PASSWORD)

        assert response.status_code == 429
        assert "Too many failed login attempts" in response.text


class TestVerifiedEmail:
    @pytest.mark.parametrize(
        "claim",
        [{}, {"email_verified": "false"}, {"email_verified": "true"}, {"email_verified": 1}],
        ids=["missing", "string-false", "string-true", "one"],
    )
    async def test_only_email_verified_true_is_accepted(
        self,
        sso_client: httpx.AsyncClient,
        provider: Provider,
        session: AsyncSession,
        claim: dict[str, object],
    ) -> None:
        operator = await make_operator(session)

        signed = await _sign_in(sso_client, provider, {"email": operator.email, **claim})

        assert signed.response.status_code == 401
        assert "no verified email" in signed.response.text
        assert not await signed_in(sso_client)
        [failed] = await audit_entries(session, "auth.login_failed")
        assert failed.diff["method"] == "oidc"
        await session.refresh(operator)
        assert operator.sso_subject is None

    async def test_a_provider_declared_as_verifying_every_email_may_omit_the_claim(
        self,
        provider: Provider,
        settings_factory: Callable[..., AdminSettings],
        database: Database,
        redis: Redis,
        session: AsyncSession,
    ) -> None:
        operator = await make_operator(session)
        settings = sso_settings(settings_factory, provider, provider_verifies_email=True)

        async with app_client(create_app(settings), database) as client:
            omitted = await _sign_in(client, provider, {"email": operator.email})
            denied = await _sign_in(
                client, provider, {"email": operator.email, "email_verified": False}
            )

        assert omitted.response.status_code == 303
        assert denied.response.status_code == 401


class TestIdentityBinding:
    async def test_the_first_sso_login_binds_the_providers_identity(
        self, sso_client: httpx.AsyncClient, provider: Provider, session: AsyncSession
    ) -> None:
        operator = await make_operator(session)

        signed = await _sign_in(sso_client, provider, verified(operator.email), sub="subject-1")

        assert signed.response.status_code == 303
        await session.refresh(operator)
        assert (operator.sso_issuer, operator.sso_subject) == (provider.url, "subject-1")
        [login] = await audit_entries(session, "auth.login")
        assert login.diff["subject"] == "subject-1"
        assert login.diff["bound"] is True

    async def test_a_second_subject_with_the_same_email_is_refused(
        self, sso_client: httpx.AsyncClient, provider: Provider, session: AsyncSession
    ) -> None:
        operator = await make_operator(session)
        await _sign_in(sso_client, provider, verified(operator.email), sub="subject-a")
        sso_client.cookies.clear()

        second = await _sign_in(sso_client, provider, verified(operator.email), sub="subject-b")

        assert second.response.status_code == 401
        assert "another identity" in second.response.text
        assert not await signed_in(sso_client)
        await session.refresh(operator)
        assert operator.sso_subject == "subject-a"

    async def test_an_email_changed_at_the_provider_cannot_take_over_another_operator(
        self, sso_client: httpx.AsyncClient, provider: Provider, session: AsyncSession
    ) -> None:
        mine = await make_operator(session, role=PlatformRole.SUPPORT)
        theirs = await make_operator(session, role=PlatformRole.SUPERADMIN)
        await _sign_in(sso_client, provider, verified(mine.email), sub="subject-mine")
        sso_client.cookies.clear()

        # The provider now says subject-mine has the other operator's email.
        signed = await _sign_in(sso_client, provider, verified(theirs.email), sub="subject-mine")

        assert signed.response.status_code == 303
        logins = await audit_entries(session, "auth.login")
        assert [entry.actor_id for entry in logins] == [mine.id, mine.id]
        await session.refresh(theirs)
        assert theirs.sso_subject is None


class TestPkce:
    async def test_the_authorization_request_carries_an_s256_challenge_the_exchange_proves(
        self, sso_client: httpx.AsyncClient, provider: Provider, session: AsyncSession
    ) -> None:
        operator = await make_operator(session)

        signed = await _sign_in(sso_client, provider, verified(operator.email))

        query = parse_qs(urlparse(signed.authorize_url).query)
        assert query["code_challenge_method"] == ["S256"]
        assert len(query["code_challenge"][0]) == 43  # base64url of a SHA-256, unpadded
        assert signed.code in provider.pkce.verified
        assert signed.response.status_code == 303


class TestStateCookie:
    async def test_is_signed_with_a_key_derived_from_the_cookie_key(
        self,
        sso_client: httpx.AsyncClient,
        provider: Provider,
        settings_factory: Callable[..., AdminSettings],
    ) -> None:
        settings = sso_settings(settings_factory, provider)
        token_keys = [key.get_secret_value() for key in settings.auth.admin_jwt_keys.values()]

        start = await sso_client.get("/admin/login/sso")
        cookie = start.cookies["milepost_admin_sso"]

        TimestampSigner(settings.cookie_secret("oidc-state")).unsign(cookie)
        for key in token_keys:
            with pytest.raises(BadSignature):
                TimestampSigner(key).unsign(cookie)
