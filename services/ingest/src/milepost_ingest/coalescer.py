"""OsmAnd fixes arrive one per request; they are written together, a few at a time.

One batch per fix would mean one transaction, one batch row and one Celery task per fix
(the worker would then pay a task per fix as well). Instead each API key's fixes gather for
at most ``linger_s`` (a fraction of a second) or until ``max_fixes`` are waiting, and are
written as one batch. Every request still waits for the commit of its own fix before it
is answered, so nothing is acknowledged that is not stored. ``linger_s = 0`` writes each
fix alone.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from milepost_common.domain.principals import Principal
from milepost_common.errors import AppError
from milepost_common.logging import get_logger

log = get_logger("milepost.ingest")

Write = Callable[[Principal, Sequence[dict[str, Any]], datetime], Awaitable[list[bool]]]


@dataclass(slots=True)
class _Group:
    principal: Principal
    items: list[dict[str, Any]] = field(default_factory=list)
    waiters: list[asyncio.Future[bool]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class FixCoalescer:
    def __init__(self, write: Write, *, linger_s: float, max_fixes: int) -> None:
        self._write = write
        self._linger_s = linger_s
        self._max_fixes = max_fixes
        self._groups: dict[uuid.UUID | None, _Group] = {}
        self._flushing: set[asyncio.Task[None]] = set()

    async def submit(self, principal: Principal, item: dict[str, Any]) -> bool:
        """Wait until the fix is committed with its group; True when its device is known.
        Raises what the write raised (DatabaseUnavailable: 503)."""
        loop = asyncio.get_running_loop()
        key = principal.id
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(principal)
            if self._linger_s > 0:
                group.timer = loop.call_later(self._linger_s, self._flush_group, key)
        waiter: asyncio.Future[bool] = loop.create_future()
        group.items.append(item)
        group.waiters.append(waiter)
        if self._linger_s <= 0 or len(group.items) >= self._max_fixes:
            self._flush_group(key)
        return await waiter

    def _flush_group(self, key: uuid.UUID | None) -> None:
        group = self._groups.pop(key, None)
        if group is None:
            return
        if group.timer is not None:
            group.timer.cancel()
        task = asyncio.create_task(self._run(group), name="ingest-osmand-flush")
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _run(self, group: _Group) -> None:
        try:
            known = await self._write(group.principal, group.items, datetime.now(UTC))
        except Exception as exc:  # noqa: BLE001 - handed to the waiting requests
            if isinstance(exc, AppError) or len(group.items) == 1:  # the database is away
                _settle(group.waiters, exc)
                return
            # Something in one fix failed the write: each alone, so that only its sender is
            # answered the error (and resends it), not every phone of the key.
            log.warning(
                "osmand_fixes_written_alone", fixes=len(group.items), error=type(exc).__name__
            )
            for item, waiter in zip(group.items, group.waiters, strict=True):
                try:
                    [is_known] = await self._write(group.principal, [item], datetime.now(UTC))
                except Exception as alone:  # noqa: BLE001 - that sender's answer
                    _settle([waiter], alone)
                else:
                    _settle([waiter], is_known)
            return
        for waiter, is_known in zip(group.waiters, known, strict=True):
            _settle([waiter], is_known)

    @property
    def waiting(self) -> int:
        return sum(len(group.items) for group in self._groups.values())

    async def close(self) -> None:
        """Write everything still waiting (at shutdown) and wait for the writes to end."""
        for key in list(self._groups):
            self._flush_group(key)
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)


def _settle(waiters: Sequence[asyncio.Future[bool]], outcome: bool | BaseException) -> None:
    """Answer the waiters still waiting (a sender may have gone away)."""
    for waiter in waiters:
        if waiter.done():
            continue
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)
