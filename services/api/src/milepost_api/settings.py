"""Settings of the api app: the common groups plus its own `api` group (MILEPOST_API__*)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from milepost_common.settings import CommonSettings, HttpSettings, load_settings


class ApiHttp(HttpSettings):
    port: int = Field(8001, ge=1, le=65535)


class ApiSettings(CommonSettings):
    api: ApiHttp = ApiHttp()


@lru_cache
def get_settings() -> ApiSettings:
    return load_settings(ApiSettings)
