"""Configuration, only from the environment (prefix ``MILEPOST_``, groups joined by ``__``).

Each service subclasses :class:`CommonSettings` and adds its own group. ``load_settings``
validates at start and exits with one line naming the bad variable.
"""

from __future__ import annotations

import json
import os
import sys
import types
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar, Literal, Self, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

ENV_PREFIX = "MILEPOST_"

# Used only when MILEPOST_ENV is local or test and no secret was configured: the stack on
# one machine must start with nothing configured, production must not.
_DEV_JWT_KEYS = {"dev": "milepost-insecure-development-signing-key-0000000000"}
_DEV_ADMIN_JWT_KEYS = {"dev-admin": "milepost-insecure-development-admin-signing-key-00000"}
_DEV_SECRETS_KEY = "bWlsZXBvc3QtaW5zZWN1cmUtZGV2LWtleS0wMDAwMDA="


class Environment(StrEnum):
    LOCAL = "local"
    TEST = "test"
    PRODUCTION = "production"


PlanCacheMode = Literal["auto", "force_generic_plan", "force_custom_plan"]


class DbSettings(BaseModel):
    url: str = "postgresql+asyncpg://milepost@127.0.0.1:5432/milepost"
    pool_size: int = Field(10, ge=1, le=200)
    max_overflow: int = Field(10, ge=0, le=200)
    pool_timeout_s: float = Field(5.0, gt=0, description="Wait for a pooled connection.")
    statement_timeout_ms: int = Field(30_000, ge=0, description="0 disables the limit.")
    connect_timeout_s: float = Field(5.0, gt=0)
    echo: bool = False
    plan_cache_mode: PlanCacheMode = Field(
        "auto",
        description="Postgres' plan_cache_mode for every connection (a startup parameter, so"
        " no transaction can undo it).",
    )
    pool_pre_ping: bool = Field(
        False,
        description="Also test each pooled connection with a round trip before use (three with"
        " SQLAlchemy's asyncpg adapter: BEGIN, an empty query, ROLLBACK). Without it a connection"
        " the server closed is still replaced at checkout once the process's event loop has"
        " seen the socket close (always in the apps, whose loop never idles); the worker, whose"
        " loop is idle between tasks, and networks that drop idle connections silently need it"
        " (the worker's default is on).",
    )

    @field_validator("url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        # Accept the plain libpq form people paste (postgresql://, postgres://).
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                url = "postgresql+asyncpg://" + url.removeprefix(plain)
        if not url.startswith("postgresql+asyncpg://"):
            raise ValueError("must be a postgresql:// URL")
        return url


class RedisSettings(BaseModel):
    url: str = Field("redis://127.0.0.1:6379/0", description="Broker (logical DB 0).")
    cache_db: int = Field(1, ge=0, le=15, description="Logical DB for cache, rate limits, live.")
    socket_timeout_s: float = Field(2.0, gt=0)

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str) -> str:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// URL")
        return url

    @property
    def cache_url(self) -> str:
        """The same server, another logical DB: cache eviction never touches the broker."""
        base, _, _db = self.url.rpartition("/")
        if not base or base.endswith(":/"):  # no db path
            return f"{self.url.rstrip('/')}/{self.cache_db}"
        return f"{base}/{self.cache_db}"


class OtelSettings(BaseModel):
    endpoint: str | None = Field(
        None,
        description="OTLP/HTTP collector base URL (e.g. http://127.0.0.1:4318); unset: no tracing.",
    )
    sample_ratio: float = Field(1.0, ge=0, le=1, description="Share of new traces kept.")
    timeout_s: float = Field(5.0, gt=0, description="Give up one export after this.")


class CelerySettings(BaseModel):
    publish_timeout_s: float = Field(2.0, gt=0, description="Give up publishing after this.")
    task_expires_s: int = Field(
        3600, gt=0, description="A sent task not started by then is dropped."
    )
    visibility_timeout_s: int = Field(
        7200, gt=0, description="Above every task time limit and retry delay."
    )


class WebhooksSettings(BaseModel):
    """Outbound webhook attempts: the api's test ping and the worker's deliveries."""

    allow_private: bool = Field(
        False,
        description="Allow receivers at private, loopback and other non-public addresses"
        " (local development and tests), for the api and the worker alike: endpoints at such"
        " literal addresses or `localhost` names are accepted at creation, and test pings and"
        " deliveries may connect to them. Off: refused at creation (422) and at every attempt.",
    )
    timeout_s: float = Field(
        10.0,
        gt=0,
        le=120,
        description="One deadline for a whole attempt: resolving, connecting, sending the"
        " event and reading the answer. A receiver that has not answered by then is cut off"
        " and the attempt recorded as a timeout (the worker's delivery task limits follow it).",
    )
    max_response_bytes: int = Field(
        64 * 1024,
        ge=1,
        description="Reading a receiver's answer body stops once this much has arrived (the"
        " last network read may add up to 64 KiB more); what was read is dropped.",
    )
    max_in_flight_per_org: int = Field(
        4,
        ge=1,
        description="Deliveries of one organization attempted at the same time, across every"
        " webhooks worker; one over the limit stays due and is attempted when a slot frees.",
    )


class AuthSettings(BaseModel):
    issuer: str = "milepost"
    jwt_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Public API tokens (aud=api), JSON object {"kid": "secret"}: every key'
        " verifies, the active one signs. Only the api holds them.",
    )
    jwt_active_kid: str | None = None
    admin_jwt_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Admin tokens (aud=admin), the same way: a key set of their own, held by"
        " the admin app only.",
    )
    admin_jwt_active_kid: str | None = None
    secrets_key: SecretStr | None = Field(
        None, description="Fernet key that encrypts secrets used again (webhook secrets)."
    )
    api_key_pepper: SecretStr = SecretStr("")
    access_token_ttl_s: int = Field(15 * 60, gt=0)
    refresh_token_ttl_s: int = Field(30 * 24 * 3600, gt=0)
    # argon2 costs; the test suite lowers them.
    argon2_time_cost: int = Field(3, ge=1)
    argon2_memory_kib: int = Field(65536, ge=8)
    argon2_max_concurrency: int = Field(4, ge=1, description="Hashes running at once.")
    login_attempts_per_minute: int = Field(
        10,
        ge=1,
        description="Failed logins a minute per email; five times as many per client IP, which"
        " failed single sign-on callbacks spend too. Beyond either: 429 with Retry-After.",
    )
    principal_cache_s: float = Field(5.0, ge=0, description="Active/suspended checks cache.")


class HttpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    cors_origins: list[str] = Field(default_factory=list)
    trusted_hosts: list[str] = Field(default_factory=lambda: ["*"])
    rate_limit: str = Field(
        "600/minute",
        description="Per principal, `limits` notation; an organization's own limit (its plan)"
        " replaces it for its principals.",
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="Proxies whose X-Forwarded-For is trusted for the client IP (the gateway's "
        "address; comma-separated, or * inside a private network).",
    )
    max_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Largest request body, counted while it arrives; more → 413 before"
        " authentication. The gateway reads the same variable for its own limit.",
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Serve the Prometheus metrics on this port of their own (prometheus"
        " client's server) instead of at /metrics on the app's port, which then has no"
        " /metrics route: only the monitoring reaches the one, only the gateway the other."
        " Unset: /metrics on the app's port (one machine, compose, tests).",
    )
    metrics_host: str | None = Field(
        None, description="Address the metrics port binds to; unset: the app's `host`."
    )

    @model_validator(mode="after")
    def _metrics_port_of_its_own(self) -> Self:
        if self.metrics_port == self.port:
            raise ValueError("metrics_port must differ from port")
        return self


# Per token realm: its key set and active kid in AuthSettings, and the development keys.
_TOKEN_KEY_SETS = (
    ("api", "jwt_keys", "jwt_active_kid", _DEV_JWT_KEYS),
    ("admin", "admin_jwt_keys", "admin_jwt_active_kid", _DEV_ADMIN_JWT_KEYS),
)


class DownloadSettings(BaseModel):
    """The exports' limits (``web.downloads``), in the apps that stream them."""

    exports_at_once: int = Field(
        4,
        ge=1,
        description="Exports one process streams at once: each holds a database connection"
        " until its client has read the last row, so they may never take the whole pool;"
        " one more answers 503 with Retry-After.",
    )
    export_send_timeout_s: float = Field(
        30.0,
        gt=0,
        description="An export whose client takes no chunk for this long (a paused download"
        " too) is cut off, its connection given back.",
    )


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    # The token realms ("api", "admin") whose JWTs this service issues and verifies: only
    # their key sets are kept (required in production); any other realm's keys are dropped.
    token_realms: ClassVar[tuple[str, ...]] = ()
    # Whether this service encrypts or decrypts webhook secrets (MILEPOST_AUTH__SECRETS_KEY):
    # required in production where it does; elsewhere it need not be given at all.
    uses_secrets_key: ClassVar[bool] = False

    env: Environment = Environment.LOCAL
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    db: DbSettings = DbSettings()
    redis: RedisSettings = RedisSettings()
    celery: CelerySettings = CelerySettings()
    auth: AuthSettings = AuthSettings()
    otel: OtelSettings = OtelSettings()
    webhooks: WebhooksSettings = WebhooksSettings()

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        """DATABASE_URL and REDIS_URL, the conventional names, fill the groups' url."""
        import os

        if not isinstance(data, dict):
            return data
        for alias, group in (("DATABASE_URL", "db"), ("REDIS_URL", "redis")):
            value = os.environ.get(alias)
            if value:
                section = data.get(group) or {}
                if isinstance(section, str):
                    section = json.loads(section)
                section.setdefault("url", value)
                data[group] = section
        return data

    @model_validator(mode="after")
    def _secrets(self) -> Self:
        production = self.env is Environment.PRODUCTION
        if self.auth.secrets_key is None:
            if production and self.uses_secrets_key:
                raise ValueError("MILEPOST_AUTH__SECRETS_KEY is required in production")
            if not production:
                self.auth.secrets_key = SecretStr(_DEV_SECRETS_KEY)
        for realm, keys_field, kid_field, dev_keys in _TOKEN_KEY_SETS:
            keys_name, kid_name = (f"MILEPOST_AUTH__{f.upper()}" for f in (keys_field, kid_field))
            if realm not in self.token_realms:
                # Never held where that realm is not verified, even when the environment has it.
                setattr(self.auth, keys_field, {})
                setattr(self.auth, kid_field, None)
                continue
            keys = getattr(self.auth, keys_field)
            if not keys:
                if production:
                    raise ValueError(f"{keys_name} is required in production")
                keys = {kid: SecretStr(key) for kid, key in dev_keys.items()}
                setattr(self.auth, keys_field, keys)
            kid = getattr(self.auth, kid_field)
            if kid and kid not in keys:
                raise ValueError(f"{kid_name} names no key of {keys_name}")
        return self


SettingsT = TypeVar("SettingsT", bound=CommonSettings)


def describe_error(exc: ValidationError) -> str:
    """One line naming the first bad variable, the way an operator would set it."""
    err = exc.errors()[0]
    loc = [str(part) for part in err["loc"] if not str(part).isdigit()]
    name = ENV_PREFIX + "__".join(loc).upper() if loc else "configuration"
    return f"milepost: invalid configuration: {name}: {err['msg']}"


def _takes_json(annotation: Any) -> bool:
    """Whether a setting of this type is read from JSON (a list, a set or a mapping)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_takes_json(arg) for arg in get_args(annotation))
    return origin in (list, set, tuple, dict)


def describe_unreadable(cls: type[CommonSettings], environ: Mapping[str, str]) -> str:
    """One line naming the variable pydantic-settings could not read at all: a list or
    mapping setting whose value is not JSON (``https://a.example``, not ``["https://a.example"]``)."""
    for name, value in environ.items():
        group, _, field = name.removeprefix(ENV_PREFIX).lower().partition("__")
        section = cls.model_fields.get(group) if name.startswith(ENV_PREFIX) else None
        model = section.annotation if section is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        setting = model.model_fields.get(field)
        if setting is None or not _takes_json(setting.annotation):
            continue
        try:
            json.loads(value)
        except ValueError:
            return (
                f"milepost: invalid configuration: {name}: not JSON; a list is written"
                ' ["a", "b"], a mapping {"key": "value"}'
            )
    return "milepost: invalid configuration: a list or mapping setting is not JSON"


def load_settings(cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Validate the environment at start; on bad config print one line and exit (status 2)."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        line = describe_error(exc)
    except SettingsError:  # a list or mapping that is not JSON, before any validation
        line = describe_unreadable(cls, os.environ)
    print(line, file=sys.stderr)  # noqa: T201 - before logging exists
    raise SystemExit(2) from None
