"""Settings of the admin app: the common groups plus its own `admin` group (MILEPOST_ADMIN__*)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from milepost_common.settings import CommonSettings, HttpSettings, load_settings


class AdminHttp(HttpSettings):
    port: int = Field(8002, ge=1, le=65535)


class AdminSettings(CommonSettings):
    admin: AdminHttp = AdminHttp()


@lru_cache
def get_settings() -> AdminSettings:
    return load_settings(AdminSettings)
