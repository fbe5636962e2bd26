"""Coalesced last use of API keys: one UPDATE for many requests, nothing lost on failure."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.db import Database, create_database
from milepost_common.domain.api_keys.models import ApiKey
from milepost_common.domain.api_keys.service import IssuedKey
from milepost_common.settings import DbSettings
from milepost_ingest.usage import KeyUsage


class TestKeyUsage:
    async def test_a_failed_flush_keeps_the_keys_for_the_next(
        self, database: Database, api_key: IssuedKey, session: AsyncSession
    ) -> None:
        dead = create_database(
            DbSettings(url="postgresql://postgres@127.0.0.1:1/nowhere", connect_timeout_s=1)
        )
        current = dead
        usage = KeyUsage(lambda: current, interval_s=3600)
        usage.touch(api_key.api_key.id)
        usage.touch(uuid.uuid4())  # a key deleted meanwhile: nothing to update, no error
        await usage.flush()
        await dead.dispose()
        assert usage.pending == 2
        current = database
        await usage.flush()
        assert usage.pending == 0
        key = await session.get(ApiKey, api_key.api_key.id, populate_existing=True)
        assert key is not None
        assert key.last_used_at is not None

    async def test_stop_flushes(
        self, database: Database, api_key: IssuedKey, session: AsyncSession
    ) -> None:
        usage = KeyUsage(lambda: database, interval_s=3600)
        usage.start()
        usage.touch(api_key.api_key.id)
        await usage.stop()
        key = await session.get(ApiKey, api_key.api_key.id, populate_existing=True)
        assert key is not None
        assert key.last_used_at is not None
