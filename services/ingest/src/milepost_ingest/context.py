"""What the ingest app builds once at start-up and every request shares."""

from __future__ import annotations

import gc
from dataclasses import dataclass

from fastapi import FastAPI

from milepost_common.db import Database
from milepost_common.domain.principals import PrincipalResolver
from milepost_common.ratelimit import RateLimiter
from milepost_common.tasks import Publisher
from milepost_common.web.serve import BUSY_GC_THRESHOLDS
from milepost_ingest.body import BodyLimits
from milepost_ingest.coalescer import FixCoalescer
from milepost_ingest.pipeline import IngestPipeline
from milepost_ingest.settings import IngestSettings
from milepost_ingest.usage import KeyUsage


@dataclass(frozen=True, slots=True)
class IngestContext:
    settings: IngestSettings
    resolver: PrincipalResolver
    limiter: RateLimiter
    usage: KeyUsage
    pipeline: IngestPipeline
    coalescer: FixCoalescer
    limits: BodyLimits


async def start_context(app: FastAPI) -> None:
    settings: IngestSettings = app.state.settings
    ingest = settings.ingest
    if ingest.tune_gc:
        # Measured (bench/ingest): 7-15 % less CPU per batch of 1,000 fixes, with the freeze
        # of what was built at start-up that every server process does (web.serve.run).
        gc.set_threshold(*BUSY_GC_THRESHOLDS)

    # Read through app.state on each use: tests swap the database in after start-up.
    def database() -> Database:
        db: Database = app.state.db
        return db

    def publisher() -> Publisher:
        pub: Publisher = app.state.publisher
        return pub

    pipeline = IngestPipeline(
        database=database,
        publisher=publisher,
        filters_cache_s=ingest.filters_cache_s,
        partitions_cache_s=ingest.partitions_cache_s,
    )
    usage = KeyUsage(database, ingest.key_usage_flush_s)
    usage.start()
    app.state.ctx = IngestContext(
        settings=settings,
        resolver=PrincipalResolver(
            None,  # API keys only: ingest holds no token keys
            cache_ttl_s=settings.auth.principal_cache_s,
            api_key_pepper=settings.auth.api_key_pepper.get_secret_value(),
        ),
        limiter=RateLimiter(settings.redis.cache_url),
        usage=usage,
        pipeline=pipeline,
        coalescer=FixCoalescer(
            pipeline.ingest_fixes,
            linger_s=ingest.osmand_linger_s,
            max_fixes=ingest.osmand_max_fixes,
        ),
        limits=BodyLimits(ingest.max_body_bytes, ingest.max_decoded_bytes, ingest.max_items),
    )


async def stop_context(app: FastAPI) -> None:
    """Write the fixes still gathering and the keys' last use before the database closes."""
    ctx: IngestContext = app.state.ctx
    await ctx.coalescer.close()
    await ctx.usage.stop()
    await ctx.limiter.aclose()
