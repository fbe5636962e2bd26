"""Settings of the ingest app: the common groups and its own `ingest` (MILEPOST_INGEST__*)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from milepost_common.settings import CommonSettings, HttpSettings, load_settings

MIB = 1024 * 1024


class IngestHttp(HttpSettings):
    port: int = Field(8003, ge=1, le=65535)
    rate_limit: str = Field(
        "600/minute",
        description="Requests per API key (`limits` notation) unless the organization sets "
        "its own `ingest_rate_limit`.",
    )
    max_items: int = Field(10_000, ge=1, description="Positions per batch; more → 413.")
    max_body_bytes: int = Field(
        10 * MIB, ge=1024, description="Request body as sent (compressed or not); more → 413."
    )
    max_decoded_bytes: int = Field(
        40 * MIB, ge=1024, description="Body after gzip decoding; more → 413 (gzip bombs)."
    )
    filters_cache_s: float = Field(
        5.0,
        ge=0,
        description="How long an organization's filters, rate limit and found devices are "
        "reused (a disabled device is refused within this time).",
    )
    partitions_cache_s: float = Field(
        60.0, gt=0, description="How long the window of existing `positions` partitions is reused."
    )
    key_usage_flush_s: float = Field(
        30.0, gt=0, description="API keys' `last_used_at` is written at most this often."
    )
    osmand_linger_s: float = Field(
        0.1,
        ge=0,
        le=1.0,
        description="Longest wait of an OsmAnd fix for others to share its batch write.",
    )
    osmand_max_fixes: int = Field(
        500, ge=1, description="An OsmAnd batch is written at once when it holds this many."
    )
    tune_gc: bool = Field(
        True,
        description="Collect young objects less often (a push allocates thousands); every "
        "server process also freezes what it built at start-up out of the collector's sight.",
    )


class IngestSettings(CommonSettings):
    ingest: IngestHttp = IngestHttp()


@lru_cache
def get_settings() -> IngestSettings:
    return load_settings(IngestSettings)
