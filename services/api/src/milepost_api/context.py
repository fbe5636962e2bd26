"""What the api app builds once at start-up and every request shares: ``app.state.ctx``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from milepost_api.cache import KeyTracker, ResponseCache
from milepost_api.settings import ApiSettings
from milepost_common.auth import PasswordHasher, Realm, TokenCodec
from milepost_common.cache import TtlCache
from milepost_common.crypto import SecretBox
from milepost_common.domain.principals import Principal, PrincipalResolver
from milepost_common.domain.webhooks.sending import receiver_client
from milepost_common.live import CACHE_KEY_PREFIX
from milepost_common.ratelimit import LoginThrottle, RateLimiter
from milepost_common.web.downloads import Turns


@dataclass(frozen=True, slots=True)
class ApiContext:
    """The app's shared services; routes take it as ``ContextDep`` (``deps.py``)."""

    settings: ApiSettings
    codec: TokenCodec
    hasher: PasswordHasher
    resolver: PrincipalResolver
    limiter: RateLimiter
    login_throttle: LoginThrottle
    box: SecretBox
    http: httpx.AsyncClient
    # Access token → resolved principal, for at most the principal cache's few seconds and
    # never past the token's expiry: the resolver's guarantees (a deactivation or suspension
    # is seen within ``principal_cache_s``) without verifying the JWT's signature again on
    # every request of a busy client.
    tokens: TtlCache[str, Principal]
    # Whole answers of the cached reads (latest positions, summaries).
    responses: ResponseCache
    # Turns to compute a summary (``summary_concurrency``).
    summaries: asyncio.Semaphore
    # Exports being streamed (``web.downloads``).
    exports: Turns


async def start_context(app: FastAPI) -> None:
    """Build the context (on start-up, after the kit has set ``app.state.settings``)."""
    settings: ApiSettings = app.state.settings
    codec = TokenCodec(settings.auth, Realm.API)
    limiter = RateLimiter(settings.redis.cache_url)
    secrets_key = settings.auth.secrets_key
    assert secrets_key is not None  # noqa: S101 - CommonSettings guarantees one
    # One connection per process on which Redis reports every change of a cached answer.
    tracker = KeyTracker(app.state.redis, (CACHE_KEY_PREFIX,))
    app.state.ctx = ApiContext(
        settings=settings,
        codec=codec,
        hasher=PasswordHasher(settings.auth),
        resolver=PrincipalResolver(
            codec,
            cache_ttl_s=settings.auth.principal_cache_s,
            api_key_pepper=settings.auth.api_key_pepper.get_secret_value(),
        ),
        limiter=limiter,
        login_throttle=LoginThrottle(limiter, settings.auth.login_attempts_per_minute),
        box=SecretBox(secrets_key.get_secret_value()),
        http=receiver_client(),
        tokens=TtlCache(settings.auth.principal_cache_s),
        responses=ResponseCache(
            app.state.redis,
            local_ttl_s=max(settings.api.latest_positions_cache_s, settings.api.summary_cache_s),
            tracker=tracker,
        ),
        summaries=asyncio.Semaphore(settings.api.summary_concurrency),
        exports=Turns(),
    )
    tracker.start()


async def stop_context(app: FastAPI) -> None:
    """Close what the context holds open: the HTTP client, the rate limiter's Redis and the
    cache's tracking connection."""
    ctx: ApiContext = app.state.ctx
    await ctx.http.aclose()
    await ctx.limiter.aclose()
    await ctx.responses.tracker.stop()
