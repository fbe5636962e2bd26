"""OpenID Connect single sign-on with authlib's Starlette client.

The provider is discovered from ``MILEPOST_OIDC__ISSUER``; the ID token (signature,
issuer, audience, expiry, nonce) is verified by authlib. The verified email must belong
to an active operator: SSO never creates accounts. When ``role_claim`` is configured and
present with a valid platform role, the operator's local role follows it (audited).
"""

from __future__ import annotations

import warnings
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from milepost_admin.settings import OidcSettings

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
            client_kwargs={"scope": settings.scopes, "timeout": 10.0},
        )

    @property
    def _client(self) -> Any:
        return self._oauth.create_client(PROVIDER)

    async def start(self, request: Request, redirect_uri: str) -> Response:
        """Redirect to the provider; state and nonce are kept in the short-lived cookie."""
        response: Response = await self._client.authorize_redirect(request, redirect_uri)
        return response

    async def finish(self, request: Request) -> dict[str, Any]:
        """The verified claims of the ID token (plus userinfo when the email is missing).

        Raises OAuthError for a denied login, a state mismatch or an invalid token.
        """
        token: dict[str, Any] = await self._client.authorize_access_token(request)
        claims: dict[str, Any] = dict(token.get("userinfo") or {})
        if "email" not in claims:
            claims.update(await self._client.userinfo(token=token))
        return claims
