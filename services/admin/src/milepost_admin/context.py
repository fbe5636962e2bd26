"""What the admin app builds once at start-up and every request shares: ``app.state.ctx``."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from redis.asyncio import Redis

from milepost_admin.console.sessions import SessionStore
from milepost_admin.settings import AdminSettings
from milepost_common.auth import PasswordHasher, Realm, TokenCodec
from milepost_common.domain.principals import PrincipalResolver
from milepost_common.domain.system.service import Broker
from milepost_common.ratelimit import LoginThrottle, RateLimiter
from milepost_common.tasks import QUEUES, WORKER_HEARTBEAT_PREFIX, WORKER_HEARTBEAT_STALE_S
from milepost_common.web.downloads import Turns


@dataclass(frozen=True, slots=True)
class AdminContext:
    """The app's shared services; routes and pages take it as ``ContextDep`` (``deps.py``)."""

    settings: AdminSettings
    codec: TokenCodec
    resolver: PrincipalResolver
    hasher: PasswordHasher
    limiter: RateLimiter
    throttle: LoginThrottle
    broker: Broker
    console_sessions: SessionStore
    # Organization exports being streamed (``web.downloads``).
    exports: Turns


async def start_context(app: FastAPI) -> None:
    """Build the context (on start-up, after the kit has set ``app.state.settings`` and
    ``app.state.redis``)."""
    settings: AdminSettings = app.state.settings
    codec = TokenCodec(settings.auth, Realm.ADMIN)
    limiter = RateLimiter(settings.redis.cache_url)
    broker = Redis.from_url(
        settings.redis.url,
        socket_timeout=settings.redis.socket_timeout_s,
        socket_connect_timeout=settings.redis.socket_timeout_s,
    )
    app.state.ctx = AdminContext(
        settings=settings,
        codec=codec,
        resolver=PrincipalResolver(
            codec,
            cache_ttl_s=settings.auth.principal_cache_s,
            api_key_pepper=settings.auth.api_key_pepper.get_secret_value(),
        ),
        hasher=PasswordHasher(settings.auth),
        limiter=limiter,
        throttle=LoginThrottle(limiter, settings.auth.login_attempts_per_minute),
        broker=Broker(broker, QUEUES, WORKER_HEARTBEAT_PREFIX, WORKER_HEARTBEAT_STALE_S),
        console_sessions=SessionStore(
            app.state.redis,
            ttl_s=settings.admin.session_ttl_s,
            idle_s=settings.admin.session_idle_s,
        ),
        exports=Turns(),
    )


async def stop_context(app: FastAPI) -> None:
    """Close what the context holds open: the broker's and the rate limiter's Redis."""
    ctx: AdminContext = app.state.ctx
    await ctx.broker.redis.aclose()
    await ctx.limiter.aclose()
