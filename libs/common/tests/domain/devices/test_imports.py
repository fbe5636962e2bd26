"""Device imports running at once: a unique_id two of them hold is one device, and the import
that comes second reports that line, instead of failing its whole file."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from milepost_common.db import create_database, unit_of_work
from milepost_common.domain.devices.imports import import_devices
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.principals import SYSTEM
from milepost_common.settings import CommonSettings
from milepost_common.testing.factories import make_organization


async def test_an_id_imported_meanwhile_elsewhere_fails_its_line_only(
    committed_database: str, settings_factory: Callable[..., Any]
) -> None:
    db = create_database(settings_factory(CommonSettings, db={"url": committed_database}).db)
    try:
        async with unit_of_work(db) as session:
            orgs = [(await make_organization(session)).id for _ in range(2)]
        committed = asyncio.Event()

        async def first() -> None:
            async with unit_of_work(db) as session:
                org = await session.get(Organization, orgs[0])
                assert org is not None
                await import_devices(session, SYSTEM, org, "unique_id,name\nshared-1,Van\n")
                await committed.wait()  # holds its row until the other has looked the id up

        async def second() -> tuple[int, int, list[str | None]]:
            async with unit_of_work(db) as session:
                org = await session.get(Organization, orgs[1])
                assert org is not None
                report = await import_devices(
                    session, SYSTEM, org, "unique_id,name\nshared-1,Van\nown-2,Truck\n"
                )
            return report.created, report.failed, [row.code for row in report.rows]

        holding = asyncio.create_task(first())
        await asyncio.sleep(0.2)
        importing = asyncio.create_task(second())
        await asyncio.sleep(0.3)  # looked the id up (free) and waits on the first's insert
        committed.set()
        await holding

        assert await importing == (1, 1, ["unique_id_taken", None])
    finally:
        await db.dispose()
