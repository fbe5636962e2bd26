"""Reconciling a replay's fix-derived alerts: new, changed in place, gone, and the webhook
events of what changed, once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from libs.common.tests.domain.alerts.alerts_support import episode, replay
from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts import service as alert_service
from milepost_common.domain.alerts.models import Alert, AlertType
from milepost_common.domain.devices.models import Device
from milepost_common.domain.geofences.models import Geofence
from milepost_common.testing.factories import make_device, make_device_state

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


async def overspeed_rule(session: AsyncSession, device: Device) -> AlertRule:
    rule = AlertRule(
        org_id=device.org_id, name="fast", type=AlertType.OVERSPEED, params={"limit_kmh": 50}
    )
    session.add(rule)
    await session.flush()
    return rule


async def alerts_of(session: AsyncSession, device: Device) -> list[Alert]:
    rows = await session.execute(
        select(Alert).where(col(Alert.device_id) == device.id).order_by(col(Alert.occurred_at))
    )
    return list(rows.scalars())


class TestReconcileAlerts:
    async def test_an_alert_is_created_then_ended_in_place(self, session: AsyncSession) -> None:
        device = await make_device(session, name="Van 1")
        rule = await overspeed_rule(session, device)
        opened = await alert_service.reconcile_alerts(
            session, replay(device, rule.id, [episode(rule, T0, None)])
        )
        assert [e.type for e in opened.events] == ["alert.created"]
        assert len(opened.created) == 1

        ended = await alert_service.reconcile_alerts(
            session, replay(device, rule.id, [episode(rule, T0, T0 + MINUTE)], resumed=True)
        )

        assert ended.created == []
        assert [e.type for e in ended.events] == ["alert.ended"]
        stored = await alerts_of(session, device)
        assert [a.id for a in stored] == [opened.created[0].id]
        assert stored[0].details["end_time"] is not None

    async def test_the_same_replay_again_changes_nothing(self, session: AsyncSession) -> None:
        device = await make_device(session)
        rule = await overspeed_rule(session, device)
        alerts = replay(device, rule.id, [episode(rule, T0, T0 + MINUTE)])
        first = await alert_service.reconcile_alerts(session, alerts)
        assert [e.type for e in first.events] == ["alert.created", "alert.ended"]

        again = await alert_service.reconcile_alerts(session, alerts)

        assert (again.created, again.events) == ([], [])

    async def test_an_alert_the_replay_no_longer_has_is_deleted(
        self, session: AsyncSession
    ) -> None:
        device = await make_device(session)
        rule = await overspeed_rule(session, device)
        early, late = episode(rule, T0, T0 + MINUTE), episode(rule, T0 + 30 * MINUTE, None)
        await alert_service.reconcile_alerts(session, replay(device, rule.id, [early, late]))

        outcome = await alert_service.reconcile_alerts(
            session, replay(device, rule.id, [], after=T0 + 20 * MINUTE)
        )

        assert outcome.events == []
        assert [a.occurred_at for a in await alerts_of(session, device)] == [T0]

    async def test_a_resumed_replay_leaves_alerts_it_does_not_name(
        self, session: AsyncSession
    ) -> None:
        device = await make_device(session)
        rule = await overspeed_rule(session, device)
        await alert_service.reconcile_alerts(
            session, replay(device, rule.id, [episode(rule, T0, T0 + MINUTE)])
        )

        await alert_service.reconcile_alerts(
            session, replay(device, rule.id, [episode(rule, T0 + 30 * MINUTE, None)], resumed=True)
        )

        assert len(await alerts_of(session, device)) == 2

    async def test_an_episode_whose_start_moved_keeps_its_alert(
        self, session: AsyncSession
    ) -> None:
        # A late fix on the old side of a fence within the dwell: the dwell, and its alert,
        # now start at the next fix of the new side.
        device = await make_device(session)
        rule = await overspeed_rule(session, device)
        first = await alert_service.reconcile_alerts(
            session, replay(device, rule.id, [episode(rule, T0 + 10 * MINUTE, None)])
        )

        outcome = await alert_service.reconcile_alerts(
            session, replay(device, rule.id, [episode(rule, T0 + 12 * MINUTE, None)], after=T0)
        )

        assert (outcome.created, outcome.events) == ([], [])
        stored = await alerts_of(session, device)
        assert [(a.id, a.occurred_at) for a in stored] == [(first.created[0].id, T0 + 12 * MINUTE)]

    async def test_an_episode_merged_into_an_earlier_one_is_deleted(
        self, session: AsyncSession
    ) -> None:
        device = await make_device(session)
        rule = await overspeed_rule(session, device)
        earlier, later = episode(rule, T0, T0 + MINUTE), episode(rule, T0 + 5 * MINUTE, None)
        first = await alert_service.reconcile_alerts(
            session, replay(device, rule.id, [earlier, later])
        )

        outcome = await alert_service.reconcile_alerts(
            session, replay(device, rule.id, [episode(rule, T0, None)], after=T0 - MINUTE)
        )

        assert (outcome.created, outcome.events) == ([], [])
        stored = await alerts_of(session, device)
        assert [(a.id, a.details["end_time"]) for a in stored] == [(first.created[0].id, None)]


class TestEnabledRules:
    """What the worker evaluates: each enabled rule of the organizations with the geofence
    it watches, read in one statement."""

    async def fence(self, session: AsyncSession, org_id: Any) -> Geofence:
        fence = Geofence(
            org_id=org_id,
            name="Depot",
            geometry={"type": "Point", "coordinates": [2.5, 1.5]},
            radius_m=100.0,
        )
        session.add(fence)
        await session.flush()
        return fence

    def rule(self, org_id: Any, **params: Any) -> AlertRule:
        return AlertRule(org_id=org_id, name="in", type=AlertType.GEOFENCE_ENTER, params=params)

    async def test_each_rule_with_its_own_organizations_geofence(
        self, session: AsyncSession
    ) -> None:
        device = await make_device(session)
        other = await make_device(session)
        mine = await self.fence(session, device.org_id)
        theirs = await self.fence(session, other.org_id)
        watched = self.rule(device.org_id, geofence_id=str(mine.id))
        upper = self.rule(device.org_id, geofence_id=str(mine.id).upper())
        elsewhere = self.rule(device.org_id, geofence_id=str(theirs.id))
        unreadable = self.rule(device.org_id, geofence_id="not-an-id")
        speed = AlertRule(org_id=device.org_id, name="fast", type=AlertType.OVERSPEED)
        off = self.rule(device.org_id, geofence_id=str(mine.id))
        off.enabled = False
        foreign = self.rule(other.org_id, geofence_id=str(theirs.id))
        session.add_all([watched, upper, elsewhere, unreadable, speed, off, foreign])
        await session.flush()

        found = await alert_service.list_enabled_rules(session, {device.org_id})

        fences = {r.rule.id: r.geofence for r in found}
        assert set(fences) == {watched.id, upper.id, elsewhere.id, unreadable.id, speed.id}
        assert fences[watched.id] == fences[upper.id]
        assert fences[watched.id] is not None
        assert fences[watched.id].id == mine.id
        assert orjson.loads(fences[watched.id].geometry) == mine.geometry
        assert fences[elsewhere.id] is None  # another organization's geofence is not watched
        assert fences[unreadable.id] is None
        assert fences[speed.id] is None


class TestOfflineAlerts:
    async def test_a_silence_is_alerted_once_though_after_s_changes(
        self, session: AsyncSession
    ) -> None:
        # The owner changes the rule from 10 to 30 minutes during a 40-minute silence: a
        # second alert (and alert.created) for the same silence, under the new after_s.
        device = await make_device(session)
        now = datetime.now(UTC)
        await make_device_state(session, device, last_fix_time=now - timedelta(minutes=40))
        rule = AlertRule(
            org_id=device.org_id, name="silent", type=AlertType.OFFLINE, params={"after_s": 600}
        )
        session.add(rule)
        await session.flush()

        first = await alert_service.record_offline_alerts(session, now)
        rule.params = {"after_s": 1800}
        session.add(rule)
        await session.flush()
        second = await alert_service.record_offline_alerts(session, now)

        assert len(first) == 1
        assert second == []
