"""A geofence deleted while an alert rule that names it is being stored: one of the two
waits for the other, and no rule is left watching a geofence that is gone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from milepost_common.db import create_database, unit_of_work
from milepost_common.domain.alert_rules import service as rule_service
from milepost_common.domain.alert_rules.schemas import AlertRuleCreate
from milepost_common.domain.geofences import service as geofence_service
from milepost_common.domain.geofences.errors import GeofenceInUse
from milepost_common.domain.geofences.schemas import GeofenceCreate
from milepost_common.settings import CommonSettings
from milepost_common.testing.factories import make_organization, make_user, principal_for


async def test_a_rule_stored_meanwhile_keeps_its_geofence(
    committed_database: str, settings_factory: Callable[..., Any]
) -> None:
    # Both checked without a lock: the rule found the fence, the delete found no rule, both
    # committed, and the rule watched nothing (409 GeofenceInUse never came).
    db = create_database(settings_factory(CommonSettings, db={"url": committed_database}).db)
    try:
        async with unit_of_work(db) as session:
            owner = principal_for(await make_user(session, await make_organization(session)))
            fence = await geofence_service.create_geofence(
                session,
                owner,
                GeofenceCreate(
                    name="Depot",
                    geometry={"type": "Point", "coordinates": [13.4, 52.5]},
                    radius_m=200,
                ),
                max_vertices=1000,
            )
        stored = asyncio.Event()
        release = asyncio.Event()

        async def create_rule() -> None:
            async with unit_of_work(db) as session:
                rule = AlertRuleCreate(
                    name="Left the depot",
                    type="geofence_exit",
                    params={"geofence_id": str(fence.id)},
                )
                await rule_service.create_alert_rule(session, owner, rule, limit=100)
                stored.set()
                await release.wait()

        async def delete_fence() -> str:
            async with unit_of_work(db) as session:
                try:
                    await geofence_service.delete_geofence(session, owner, fence.id)
                except GeofenceInUse:
                    return "in use"
            return "deleted"

        creating = asyncio.create_task(create_rule())
        await stored.wait()
        deleting = asyncio.create_task(delete_fence())
        await asyncio.sleep(0.3)
        release.set()
        await creating

        assert await deleting == "in use"
    finally:
        await db.dispose()
