"""Settings of the ingest app: the common groups plus its own `ingest` group (MILEPOST_INGEST__*)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from milepost_common.settings import CommonSettings, HttpSettings, load_settings


class IngestHttp(HttpSettings):
    port: int = Field(8003, ge=1, le=65535)


class IngestSettings(CommonSettings):
    ingest: IngestHttp = IngestHttp()


@lru_cache
def get_settings() -> IngestSettings:
    return load_settings(IngestSettings)
