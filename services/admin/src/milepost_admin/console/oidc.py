"""OpenID Connect single sign-on with authlib's Starlette client.

The provider is discovered from ``MILEPOST_OIDC__ISSUER``; the ID token (signature,
issuer, audience, expiry, nonce) is verified by authlib, and the code is exchanged with a
PKCE (S256) verifier, so an intercepted code is useless. Only an email the provider marks
``email_verified: true`` is accepted (or, for a provider declared as verifying every email,
one without the claim). The operator is found by the provider's (iss, sub), bound on the
first SSO login (``domain.operators.sso``): SSO never creates accounts. When ``role_claim`` is
configured and present with a valid platform role, the operator's local role follows it
(audited).
"""

from __future__ import annotations

import warnings
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from milepost_admin.settings import OidcSettings
from milepost_common.domain.operators.errors import SsoLoginRefused
from milepost_common.domain.operators.sso import SsoIdentity

with warnings.catch_warnings():
    # authlib falls back to httpx when its successor package is absent and warns about it
    # (its module turns its own warnings "always" on at import: silence them after that).
    from authlib.deprecate import AuthlibDeprecationWarning

    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.starlette_client import OAuth, OAuthError

PROVIDER = "sso"

__all__ = ["OAuthError", "SingleSignOn"]


class SingleSignOn:
    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self._oauth = OAuth()
        issuer = (settings.issuer or "").rstrip("/")
        self._oauth.register(
            PROVIDER,
            client_id=settings.client_id,
            client_secret=(
                settings.client_secret.get_secret_value() if settings.client_secret else None
            ),
            server_metadata_url=f"{issuer}/.well-known/openid-configuration",
            client_kwargs={
                "scope": settings.scopes,
                "timeout": 10.0,
                "code_challenge_method": "S256",
            },
        )

    @property
    def _client(self) -> Any:
        return self._oauth.create_client(PROVIDER)

    async def start(self, request: Request, redirect_uri: str) -> Response:
        """Redirect to the provider; state and nonce are kept in the short-lived cookie."""
        response: Response = await self._client.authorize_redirect(request, redirect_uri)
        return response

    async def finish(self, request: Request) -> dict[str, Any]:
        """The verified claims of the ID token (the email from userinfo when the token has
        none, if userinfo speaks of the same subject).

        Raises OAuthError for a denied login, a state mismatch or an invalid token.
        """
        token: dict[str, Any] = await self._client.authorize_access_token(request)
        claims: dict[str, Any] = dict(token.get("userinfo") or {})
        if "email" not in claims:
            info = await self._client.userinfo(token=token)
            # OIDC Core 5.3.4: an answer about another subject must not be used.
            if info.get("sub") == claims.get("sub"):
                claims.update({k: info[k] for k in ("email", "email_verified") if k in info})
        return claims

    def identity(self, claims: dict[str, Any]) -> SsoIdentity:
        """The identity the claims vouch for. Raises SsoLoginRefused unless they carry the
        issuer, the subject and a verified email: ``email_verified`` exactly true (a missing
        claim, ``"true"`` or ``"false"`` as strings do not count), or absent when the
        provider is declared as verifying every email."""
        issuer, subject, email = claims.get("iss"), claims.get("sub"), claims.get("email")
        verified = claims.get("email_verified")
        trusted = self.settings.provider_verifies_email and "email_verified" not in claims
        if not (isinstance(issuer, str) and issuer and isinstance(subject, str) and subject):
            raise SsoLoginRefused("the provider sent no subject")
        if not isinstance(email, str) or not email or not (verified is True or trusted):
            raise SsoLoginRefused("the provider sent no verified email")
        return SsoIdentity(issuer=issuer, subject=subject, email=email)
