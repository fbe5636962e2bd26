"""The OsmAnd micro-batcher: fixes of one key share a write, none waits long, the database's
errors reach every sender and a failing fix its own sender alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pytest

from milepost_common.domain.principals import Principal, PrincipalKind
from milepost_ingest.coalescer import FixCoalescer
from milepost_ingest.unavailable import DatabaseUnavailable


def key_principal() -> Principal:
    return Principal(PrincipalKind.API_KEY, uuid.uuid4(), uuid.uuid4(), "mp_test")


class Recorder:
    """Stands in for the database write: records each call, knows devices named `known-*`."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[Principal, list[str]]] = []
        self.error = error

    async def __call__(
        self, principal: Principal, items: Sequence[dict[str, Any]], now: datetime
    ) -> list[bool]:
        await asyncio.sleep(0)
        self.calls.append((principal, [item["device_id"] for item in items]))
        if self.error is not None:
            raise self.error
        return [item["device_id"].startswith("known") for item in items]


class TestFixCoalescer:
    async def test_fixes_within_the_linger_share_one_write(self) -> None:
        write = Recorder()
        coalescer = FixCoalescer(write, linger_s=0.05, max_fixes=100)
        principal = key_principal()
        started = asyncio.get_running_loop().time()
        results = await asyncio.gather(
            coalescer.submit(principal, {"device_id": "known-1"}),
            coalescer.submit(principal, {"device_id": "stranger"}),
            coalescer.submit(principal, {"device_id": "known-2"}),
        )
        assert asyncio.get_running_loop().time() - started < 0.5
        assert list(results) == [True, False, True]
        assert [ids for _, ids in write.calls] == [["known-1", "stranger", "known-2"]]

    async def test_a_full_group_is_written_at_once(self) -> None:
        write = Recorder()
        coalescer = FixCoalescer(write, linger_s=30, max_fixes=2)
        principal = key_principal()
        results = await asyncio.wait_for(
            asyncio.gather(
                coalescer.submit(principal, {"device_id": "known-1"}),
                coalescer.submit(principal, {"device_id": "known-2"}),
            ),
            timeout=1,
        )
        assert list(results) == [True, True]
        assert len(write.calls) == 1

    async def test_each_key_has_its_own_group(self) -> None:
        write = Recorder()
        coalescer = FixCoalescer(write, linger_s=0.02, max_fixes=100)
        first, second = key_principal(), key_principal()
        await asyncio.gather(
            coalescer.submit(first, {"device_id": "known-a"}),
            coalescer.submit(second, {"device_id": "known-b"}),
        )
        assert sorted(ids for _, ids in write.calls) == [["known-a"], ["known-b"]]
        assert {p.id for p, _ in write.calls} == {first.id, second.id}

    async def test_no_linger_writes_each_fix_alone(self) -> None:
        write = Recorder()
        coalescer = FixCoalescer(write, linger_s=0, max_fixes=100)
        principal = key_principal()
        await asyncio.gather(
            coalescer.submit(principal, {"device_id": "known-1"}),
            coalescer.submit(principal, {"device_id": "known-2"}),
        )
        assert len(write.calls) == 2

    async def test_a_failed_write_fails_every_sender(self) -> None:
        coalescer = FixCoalescer(Recorder(RuntimeError("db down")), linger_s=0.01, max_fixes=10)
        principal = key_principal()
        results = await asyncio.gather(
            coalescer.submit(principal, {"device_id": "known-1"}),
            coalescer.submit(principal, {"device_id": "known-2"}),
            return_exceptions=True,
        )
        assert [str(r) for r in results] == ["db down", "db down"]

    async def test_a_fix_that_fails_the_write_fails_its_sender_alone(self) -> None:
        class Spoiled(Recorder):
            async def __call__(
                self, principal: Principal, items: Sequence[dict[str, Any]], now: datetime
            ) -> list[bool]:
                known = await super().__call__(principal, items, now)
                if any(item["device_id"] == "known-spoiled" for item in items):
                    raise TypeError("Integer exceeds 64-bit range")
                return known

        write = Spoiled()
        coalescer = FixCoalescer(write, linger_s=0.01, max_fixes=10)
        principal = key_principal()
        results = await asyncio.gather(
            coalescer.submit(principal, {"device_id": "known-1"}),
            coalescer.submit(principal, {"device_id": "known-spoiled"}),
            coalescer.submit(principal, {"device_id": "stranger"}),
            return_exceptions=True,
        )
        assert [r if isinstance(r, bool) else type(r).__name__ for r in results] == [
            True,
            "TypeError",
            False,
        ]
        assert [ids for _, ids in write.calls][1:] == [["known-1"], ["known-spoiled"], ["stranger"]]

    async def test_the_database_away_fails_every_sender_at_once(self) -> None:
        write = Recorder(DatabaseUnavailable())
        coalescer = FixCoalescer(write, linger_s=0.01, max_fixes=10)
        principal = key_principal()
        results = await asyncio.gather(
            coalescer.submit(principal, {"device_id": "known-1"}),
            coalescer.submit(principal, {"device_id": "known-2"}),
            return_exceptions=True,
        )
        assert all(isinstance(r, DatabaseUnavailable) for r in results)
        assert len(write.calls) == 1  # not retried fix by fix

    async def test_close_writes_what_is_waiting(self) -> None:
        write = Recorder()
        coalescer = FixCoalescer(write, linger_s=30, max_fixes=100)
        waiting = asyncio.create_task(coalescer.submit(key_principal(), {"device_id": "known"}))
        await asyncio.sleep(0)
        assert coalescer.waiting == 1
        await coalescer.close()
        assert await waiting is True
        assert coalescer.waiting == 0

    async def test_a_sender_that_went_away_does_not_break_the_others(self) -> None:
        coalescer = FixCoalescer(Recorder(), linger_s=0.02, max_fixes=100)
        principal = key_principal()
        gone = asyncio.create_task(coalescer.submit(principal, {"device_id": "known-1"}))
        stays = asyncio.create_task(coalescer.submit(principal, {"device_id": "known-2"}))
        await asyncio.sleep(0)
        gone.cancel()
        assert await stays is True
        with pytest.raises(asyncio.CancelledError):
            await gone
