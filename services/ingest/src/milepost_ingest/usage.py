"""Coalesced ``last_used_at``: keys seen are remembered in-process and written together.

A write per request would put an UPDATE (and its row lock, WAL, bloat) on the hottest path
for a timestamp nobody needs to the second. Keys seen since the last flush are written in
one UPDATE every ``interval_s``, and once more at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from milepost_common.db import Database, unit_of_work
from milepost_common.domain.api_keys import service as api_key_service
from milepost_common.logging import get_logger

log = get_logger("milepost.ingest")


class KeyUsage:
    def __init__(self, database: Callable[[], Database], interval_s: float) -> None:
        self._database = database
        self._interval_s = interval_s
        self._seen: dict[uuid.UUID, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    def touch(self, key_id: uuid.UUID) -> None:
        self._seen[key_id] = datetime.now(UTC)

    @property
    def pending(self) -> int:
        return len(self._seen)

    async def flush(self) -> None:
        """Write what was seen; on failure keep it for the next flush (nothing raised)."""
        if not self._seen:
            return
        seen, self._seen = self._seen, {}
        try:
            async with unit_of_work(self._database()) as session:
                await api_key_service.record_usage(session, seen)
        except asyncio.CancelledError:
            # stop() cancelled the periodic task mid-write: its own last flush writes these.
            self._keep(seen)
            raise
        except Exception as exc:  # noqa: BLE001 - a missed timestamp waits for the next flush
            log.warning("key_usage_flush_failed", error=type(exc).__name__, keys=len(seen))
            self._keep(seen)

    def _keep(self, seen: dict[uuid.UUID, datetime]) -> None:
        """Put back what a flush did not write (the later time wins; writing one twice is
        harmless: the UPDATE never moves a time backwards)."""
        for key_id, used_at in seen.items():
            self._seen[key_id] = max(used_at, self._seen.get(key_id, used_at))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.flush()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ingest-key-usage")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
