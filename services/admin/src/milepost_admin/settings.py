"""Settings of the admin app: the common groups plus its own `admin` group (MILEPOST_ADMIN__*)."""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from typing import Self

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from milepost_common.settings import (
    CommonSettings,
    DownloadSettings,
    Environment,
    HttpSettings,
    load_settings,
)

# Only when MILEPOST_ENV is local or test and no key was configured (as the common secrets).
_DEV_COOKIE_KEY = "milepost-insecure-development-cookie-key-000000000000"


class OidcSettings(BaseModel):
    """Single sign-on for the console; off unless ``issuer`` and ``client_id`` are set.

    An operator's first SSO login matches the provider's verified email and binds the
    operator to the provider's (iss, sub); later logins match that identity only. SSO never
    creates an operator.
    """

    issuer: str | None = Field(
        None, description="The provider's issuer URL (discovery at /.well-known/...)."
    )
    client_id: str | None = None
    client_secret: SecretStr | None = None
    scopes: str = "openid email profile"
    role_claim: str | None = Field(
        None,
        description="Claim carrying the platform role (support, operator, superadmin); "
        "when unset or absent, the operator's local role applies.",
    )
    button_label: str = "Sign in with SSO"
    provider_verifies_email: bool = Field(
        False,
        description="Declare that the provider verifies every email it sends: an ID token"
        " without `email_verified` is then accepted. Off: only `email_verified: true` is.",
    )

    @property
    def enabled(self) -> bool:
        return bool(self.issuer and self.client_id)


class AdminHttp(HttpSettings, DownloadSettings):
    port: int = Field(8002, ge=1, le=65535)
    public_url: str = Field(
        "http://127.0.0.1:8080",
        description="Where people reach the platform; invitation and reset links start here.",
    )
    invite_path: str = Field(
        "/api/account/invitation",
        description="Page of the invitation links of organizations' users (after public_url;"
        " by default the api's own page); the token follows in the fragment (#token=...),"
        " which browsers never send: it stays out of access logs and Referer headers."
        " Operators' links always open the console's own pages (/admin/invitation,"
        " /admin/password-reset).",
    )
    reset_path: str = Field(
        "/api/account/password-reset",
        description="Page of the users' reset links, the same way as invite_path.",
    )
    max_import_body_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="Body limit of the device CSV imports (JSON API and console), above"
        " max_body_bytes: for files of up to 10,000 rows, the most an import takes.",
    )
    session_cookie: str = "milepost_admin_session"
    session_ttl_s: int = Field(8 * 3600, gt=0, description="Console session lifetime.")
    session_idle_s: int = Field(3600, gt=0, description="Console session ends after this idle.")
    cookie_secure: bool | None = Field(
        None, description="Secure cookies; default: on except in the local and test envs."
    )
    cookie_key: SecretStr | None = Field(
        None,
        description="Signs the console's own cookies (the SSO round trip's state, SQLAdmin's"
        " session), each with a key derived from this one for its purpose; never a token key."
        " Required in production.",
    )
    map_tile_url: str = Field(
        "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        description="Tile URL template of the console's map (Leaflet's {s}, {z}, {x}, {y});"
        " its origin is added to the console's CSP img-src. Empty: no tiles (markers and"
        " lines on a blank map, as the tests run). OpenStreetMap's tile servers are for light"
        " use only: point this at your own or a provider's for real traffic.",
    )
    map_tile_attribution: str = Field(
        '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors',
        description="Credit shown on the map for the tiles (HTML, trusted configuration).",
    )
    map_poll_s: float = Field(
        5, ge=0.5, le=300, description="How often the console's map asks for new positions."
    )

    @field_validator("invite_path", "reset_path")
    @classmethod
    def _path_only(cls, path: str) -> str:
        # A query or fragment here would put the one-time token where servers log it.
        if not path.startswith("/") or "?" in path or "#" in path:
            raise ValueError("must be a path (/...) without a query or fragment")
        return path

    @field_validator("map_tile_url")
    @classmethod
    def _tile_template(cls, url: str) -> str:
        if url:
            map_tile_source(url)
        return url


def map_tile_source(url: str) -> str:
    """The CSP source of a tile URL template: its origin, a ``{s}.`` subdomain as ``*.``.
    Raises ValueError for anything else than an http(s) template with {z}, {x} and {y}."""
    scheme, sep, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    if scheme not in ("http", "https") or not sep or not host:
        raise ValueError("must be an http(s) URL template")
    if not all(part in rest for part in ("{z}", "{x}", "{y}")):
        raise ValueError("must contain {z}, {x} and {y}")
    if host.startswith("{s}."):
        host = "*." + host.removeprefix("{s}.")
    if any(c in host for c in "{}@;, '\"\\"):
        raise ValueError("the host may hold no placeholder but a leading {s}.")
    return f"{scheme}://{host}"


class AdminSettings(CommonSettings):
    token_realms = ("admin",)

    admin: AdminHttp = AdminHttp()
    oidc: OidcSettings = OidcSettings()

    @model_validator(mode="after")
    def _cookie_key(self) -> Self:
        if self.admin.cookie_key is None:
            if self.env is Environment.PRODUCTION:
                raise ValueError("MILEPOST_ADMIN__COOKIE_KEY is required in production")
            self.admin.cookie_key = SecretStr(_DEV_COOKIE_KEY)
        return self

    def cookie_secret(self, purpose: str) -> str:
        """The signing secret of one kind of console cookie: one leaked secret signs nothing
        else."""
        assert self.admin.cookie_key is not None  # noqa: S101 - set by the validator
        key = self.admin.cookie_key.get_secret_value().encode()
        return hmac.new(key, f"milepost-admin-{purpose}".encode(), hashlib.sha256).hexdigest()

    @property
    def cookie_secure(self) -> bool:
        if self.admin.cookie_secure is not None:
            return self.admin.cookie_secure
        return self.env not in (Environment.LOCAL, Environment.TEST)


@lru_cache
def get_settings() -> AdminSettings:
    return load_settings(AdminSettings)
