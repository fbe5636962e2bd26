"""Alerts changed by a request while the worker works on them: an acknowledgement racing
another or the worker's recomputation dropping the alert (the first acknowledgement stays; a
dropped alert is 404), and a rule disabled while a batch opens one of its episodes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlmodel import col, select

from libs.common.tests.domain.alerts.alerts_support import episode, replay
from milepost_common.db import Database, unit_of_work
from milepost_common.domain.alert_rules import service as alert_rule_service
from milepost_common.domain.alert_rules.schemas import AlertRuleUpdate
from milepost_common.domain.alerts import service as alert_service
from milepost_common.domain.alerts.errors import AlertNotFound
from milepost_common.domain.alerts.models import Alert
from milepost_common.domain.devices import state as device_state
from milepost_common.domain.principals import Principal
from milepost_common.domain.users.models import OrgRole
from milepost_common.testing.factories import (
    make_alert,
    make_alert_rule,
    make_device,
    make_organization,
    make_user,
    principal_for,
)


async def test_two_acknowledgements_at_once_keep_the_first(committed_db: Database) -> None:
    # Both read the alert unacknowledged: the second overwrote who acknowledged it and when,
    # and the audit log had two acknowledgements.
    async with unit_of_work(committed_db) as session:
        org = await make_organization(session)
        device = await make_device(session, org)
        alert = await make_alert(session, device, datetime.now(UTC) - timedelta(minutes=5))
        first, second = [
            principal_for(await make_user(session, org, role=OrgRole.MANAGER)) for _ in range(2)
        ]
    release = asyncio.Event()

    async def acknowledge(actor: Principal, hold: asyncio.Event | None) -> uuid.UUID | None:
        async with unit_of_work(committed_db) as session:
            read = await alert_service.acknowledge_alert(session, actor, alert.id)
            if hold is not None:
                await hold.wait()
        return read.acknowledged_by

    holding = asyncio.create_task(acknowledge(first, release))
    await asyncio.sleep(0.3)
    racing = asyncio.create_task(acknowledge(second, None))
    await asyncio.sleep(0.3)
    release.set()

    assert await asyncio.gather(holding, racing) == [first.id, first.id]
    async with unit_of_work(committed_db) as session:
        stored = await session.get(Alert, alert.id)
        assert stored is not None
        assert stored.acknowledged_by == first.id


async def test_an_alert_the_worker_drops_meanwhile_is_not_found(committed_db: Database) -> None:
    # A late fix made the worker's recomputation drop the alert while it was being
    # acknowledged: the acknowledgement's update matched no row and answered 500.
    async with unit_of_work(committed_db) as session:
        org = await make_organization(session)
        device = await make_device(session, org)
        alert = await make_alert(session, device, datetime.now(UTC) - timedelta(minutes=5))
        manager = principal_for(await make_user(session, org, role=OrgRole.MANAGER))
    release = asyncio.Event()

    async def drop() -> None:
        async with unit_of_work(committed_db) as session:
            stored = await session.get(Alert, alert.id)
            assert stored is not None
            await alert_service.reconcile_alerts(session, replay(device, stored.rule_id, []))
            await release.wait()

    async def acknowledge() -> str:
        async with unit_of_work(committed_db) as session:
            try:
                await alert_service.acknowledge_alert(session, manager, alert.id)
            except AlertNotFound:
                return "not_found"
        return "acknowledged"

    dropping = asyncio.create_task(drop())
    await asyncio.sleep(0.3)
    acknowledging = asyncio.create_task(acknowledge())
    await asyncio.sleep(0.3)
    release.set()
    await dropping

    assert await acknowledging == "not_found"


async def test_a_rule_disabled_while_a_batch_opens_its_episode_ends_that_episode(
    committed_db: Database,
) -> None:
    # The batch (under the device's lock) opened an overspeed episode with the rule as it
    # read it; the rule was disabled meanwhile, found no open episode committed yet and ended
    # nothing: the episode stayed open for good (no rule evaluates it again, no alert.ended).
    async with unit_of_work(committed_db) as session:
        org = await make_organization(session)
        device = await make_device(session, org)
        rule = await make_alert_rule(session, org.id, params={"limit_kmh": 50})
        manager = principal_for(await make_user(session, org, role=OrgRole.MANAGER))
    start = datetime.now(UTC) - timedelta(minutes=5)
    release = asyncio.Event()

    async def process_batch() -> None:
        async with unit_of_work(committed_db) as session:
            await device_state.lock_device_states(session, {device.id: org.id})
            opened = episode(rule, start, None)
            await alert_service.reconcile_alerts(
                session, replay(device, rule.id, [opened], resumed=True)
            )
            await release.wait()

    async def disable_rule() -> None:
        async with unit_of_work(committed_db) as session:
            await alert_rule_service.update_alert_rule(
                session, manager, rule.id, AlertRuleUpdate(enabled=False)
            )

    processing = asyncio.create_task(process_batch())
    await asyncio.sleep(0.3)
    disabling = asyncio.create_task(disable_rule())
    await asyncio.sleep(0.3)
    release.set()
    await asyncio.gather(processing, disabling)

    async with unit_of_work(committed_db) as session:
        stored = (await session.scalars(select(Alert).where(col(Alert.rule_id) == rule.id))).one()
    assert stored.details["end_time"] is not None
