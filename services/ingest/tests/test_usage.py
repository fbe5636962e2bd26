"""Coalesced last use of API keys: one UPDATE for many requests, nothing lost on failure."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.db import Database, create_database, unit_of_work
from milepost_common.domain.api_keys.models import ApiKey
from milepost_common.domain.api_keys.service import IssuedKey
from milepost_common.settings import DbSettings
from milepost_common.testing.factories import make_api_key, make_organization
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

    async def test_a_flush_cut_short_by_shutdown_is_written_by_the_last_one(
        self, committed_database: str
    ) -> None:
        """stop() cancels the periodic task; when that lands mid-write, the keys it was
        writing must still reach the final flush, not vanish with the cancelled task."""
        db = create_database(DbSettings(url=committed_database))
        try:
            async with unit_of_work(db) as session:
                key = await make_api_key(session, await make_organization(session))
            usage = KeyUsage(lambda: db, interval_s=3600)
            usage.touch(key.api_key.id)
            flushing = asyncio.create_task(usage.flush())
            await asyncio.sleep(0)  # the flush has taken the keys and waits on the database
            flushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flushing
            assert usage.pending == 1
            await usage.flush()
            async with unit_of_work(db) as session:
                stored = await session.get(ApiKey, key.api_key.id)
                assert stored is not None
                assert stored.last_used_at is not None
        finally:
            await db.dispose()
