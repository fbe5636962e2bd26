"""Overspeed rules that could never fire are refused; one that later cannot fire for a vehicle
says so; every rule says it applies to fixes from its creation on (issue 15, item 9)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts.models import Alert, AlertType
from milepost_common.domain.devices.models import Device
from milepost_common.domain.geofences.models import Geofence
from milepost_common.domain.webhooks.models import WebhookDelivery, WebhookEndpoint
from milepost_common.testing.factories import (
    make_alert,
    make_alert_rule,
    make_device,
    make_device_state,
)
from services.api.tests.api_support import Bearer, Team

RULES = "/api/v1/alert-rules"


def overspeed(**params: object) -> dict[str, object]:
    return {"name": "Speeding", "type": "overspeed", "params": params}


class TestAlertRules:
    async def test_params_get_their_defaults(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        created = await client.post(
            "/api/v1/alert-rules",
            json={
                "name": "Speeding",
                "type": "overspeed",
                "params": {"limit_kmh": 90},
                "vehicle_ids": [str(device.id)],
            },
            headers=bearer(team.manager),
        )
        assert created.status_code == 201
        assert created.json()["params"] == {
            "limit_kmh": 90.0,
            "multiplier": 1.0,
            "min_duration_s": 0,
        }
        rule_id = created.json()["id"]
        updated = await client.patch(
            f"/api/v1/alert-rules/{rule_id}",
            json={"vehicle_ids": None, "enabled": False},
            headers=bearer(team.manager),
        )
        assert updated.json()["vehicle_ids"] is None
        assert updated.json()["enabled"] is False
        deleted = await client.delete(f"/api/v1/alert-rules/{rule_id}", headers=bearer(team.owner))
        assert deleted.status_code == 204

    @pytest.mark.parametrize(
        ("rule_type", "params"),
        [
            ("idle", {}),
            ("offline", {"after_s": 0}),
            ("low_battery", {"threshold_pct": 150}),
            ("overspeed", {"unknown": 1}),
            ("geofence_enter", {"geofence_id": "not-a-uuid"}),
        ],
    )
    async def test_invalid_params_are_422(
        self,
        client: httpx.AsyncClient,
        team: Team,
        bearer: Bearer,
        rule_type: str,
        params: dict[str, Any],
    ) -> None:
        response = await client.post(
            "/api/v1/alert-rules",
            json={"name": "x", "type": rule_type, "params": params},
            headers=bearer(team.manager),
        )
        assert response.status_code == 422
        assert response.json()["error"]["details"][0]["loc"][:2] == ["body", "params"]


class TestLimit:
    async def test_one_rule_over_the_limit_is_a_409_and_a_deleted_one_frees_room(
        self,
        api_app: FastAPI,
        client: httpx.AsyncClient,
        team: Team,
        other_team: Team,
        bearer: Bearer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(api_app.state.ctx.settings.api, "max_alert_rules_per_org", 2)
        rule = {"name": "Battery", "type": "low_battery", "params": {"threshold_pct": 20}}
        manager = bearer(team.manager)

        created = [(await client.post(RULES, json=rule, headers=manager)) for _ in range(2)]
        over = await client.post(RULES, json=rule, headers=manager)
        # What is wrong with the rule itself is said first, even at the limit.
        invalid = await client.post(
            RULES, json={**rule, "params": {"threshold_pct": 300}}, headers=manager
        )
        elsewhere = await client.post(RULES, json=rule, headers=bearer(other_team.manager))
        await client.delete(f"{RULES}/{created[0].json()['id']}", headers=manager)
        again = await client.post(RULES, json=rule, headers=manager)

        assert [c.status_code for c in created] == [201, 201]
        assert over.status_code == 409
        assert invalid.status_code == 422
        assert over.json()["error"] == {
            **over.json()["error"],
            "code": "conflict",
            "message": "The organization already has the most alert rules it may have (2).",
        }
        assert elsewhere.status_code == 201
        assert again.status_code == 201
        listed = await client.get(RULES, headers=manager)
        assert len(listed.json()["items"]) == 2

    async def test_rules_naming_more_vehicles_than_the_limit_in_all_are_a_409(
        self,
        api_app: FastAPI,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # The workers read every enabled rule's list for each of the organization's batches:
        # 100 rules of 10,000 vehicles took 0.8 s a batch.
        monkeypatch.setattr(api_app.state.ctx.settings.api, "max_rule_vehicles_per_org", 3)
        a, b, c = [str((await make_device(session, team.org)).id) for _ in range(3)]
        rule = {"name": "Battery", "type": "low_battery", "params": {"threshold_pct": 20}}
        manager = bearer(team.manager)

        first = await client.post(RULES, json={**rule, "vehicle_ids": [a, b]}, headers=manager)
        over = await client.post(RULES, json={**rule, "vehicle_ids": [b, c]}, headers=manager)
        for_all = await client.post(RULES, json={**rule, "vehicle_ids": None}, headers=manager)
        grown = await client.patch(
            f"{RULES}/{first.json()['id']}", json={"vehicle_ids": [a, b, c]}, headers=manager
        )
        patched_over = await client.patch(
            f"{RULES}/{for_all.json()['id']}", json={"vehicle_ids": [a]}, headers=manager
        )

        assert [first.status_code, for_all.status_code, grown.status_code] == [201, 201, 200]
        assert [over.status_code, patched_over.status_code] == [409, 409]
        assert over.json()["error"]["code"] == "conflict"
        assert "may name 3 vehicles in all; with this rule they would name 4" in over.text


class TestCreate:
    async def test_a_rule_without_limit_is_refused_naming_the_vehicles_without_one(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        await make_device(session, team.org, name="Limited van", speed_limit_kmh=80)
        bare = await make_device(session, team.org, name="Bare truck")

        response = await client.post(RULES, json=overspeed(), headers=bearer(team.manager))

        body = response.json()["error"]
        assert response.status_code == 422
        assert body["code"] == "validation_failed"
        assert "Bare truck" in body["message"]
        assert "Limited van" not in body["message"]
        assert "limit_kmh" in body["message"]
        assert [d["loc"] for d in body["details"]] == [["body", "params", "limit_kmh"]]
        assert str(bare.id) in body["details"][0]["msg"]

    async def test_only_the_listed_vehicles_count(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        limited = await make_device(session, team.org, speed_limit_kmh=80)
        await make_device(session, team.org)  # no limit, not covered

        response = await client.post(
            RULES,
            json={**overspeed(), "vehicle_ids": [str(limited.id)]},
            headers=bearer(team.manager),
        )

        assert response.status_code == 201
        assert response.json()["inactive_vehicle_ids"] == []

    async def test_the_organizations_default_or_the_rules_own_limit_is_enough(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        await make_device(session, team.org)
        own_limit = await client.post(
            RULES, json=overspeed(limit_kmh=90), headers=bearer(team.manager)
        )
        team.org.default_speed_limit_kmh = 50
        session.add(team.org)
        await session.flush()
        org_default = await client.post(RULES, json=overspeed(), headers=bearer(team.manager))

        assert own_limit.status_code == 201
        assert org_default.status_code == 201

    async def test_the_answer_says_the_rule_applies_from_its_creation(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        response = await client.post(
            RULES, json=overspeed(limit_kmh=90), headers=bearer(team.manager)
        )

        body = response.json()
        assert response.status_code == 201
        assert body["applies_from"] == body["created_at"]
        assert datetime.fromisoformat(body["applies_from"]).tzinfo is not None


class TestUpdate:
    async def test_dropping_the_limit_is_refused_like_a_creation(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        await make_device(session, team.org, name="Bare truck")
        rule = (
            await client.post(RULES, json=overspeed(limit_kmh=90), headers=bearer(team.manager))
        ).json()

        response = await client.patch(
            f"{RULES}/{rule['id']}",
            json={"params": {"multiplier": 1.1}},
            headers=bearer(team.manager),
        )

        assert response.status_code == 422
        assert "Bare truck" in response.json()["error"]["message"]

    async def test_covering_a_vehicle_without_a_limit_is_refused(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        limited = await make_device(session, team.org, speed_limit_kmh=80)
        bare = await make_device(session, team.org, name="Bare truck")
        rule = (
            await client.post(
                RULES,
                json={**overspeed(), "vehicle_ids": [str(limited.id)]},
                headers=bearer(team.manager),
            )
        ).json()

        response = await client.patch(
            f"{RULES}/{rule['id']}",
            json={"vehicle_ids": [str(limited.id), str(bare.id)]},
            headers=bearer(team.manager),
        )

        assert response.status_code == 422
        assert str(bare.id) in response.json()["error"]["details"][0]["msg"]

    async def test_a_vehicle_not_found_is_named(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        # "One or more vehicles not found." and nothing else: a rule read back after one of
        # its vehicles was deleted could not be sent again without guessing which.
        device = await make_device(session, team.org, speed_limit_kmh=80)
        rule = await make_alert_rule(session, team.org.id, params={"multiplier": 1.0})
        gone = "0b6f2a52-7d0c-4c8e-9a57-3e2f8f0b1c11"

        response = await client.patch(
            f"{RULES}/{rule.id}",
            json={"vehicle_ids": [str(device.id), gone]},
            headers=bearer(team.manager),
        )

        assert response.status_code == 404
        assert response.json()["error"]["details"] == [
            {
                "loc": ["body", "vehicle_ids", 1],
                "msg": f"Vehicle {gone} not found.",
                "type": "not_found",
            }
        ]


class TestOpenEpisodes:
    """A rule that stops applying to a vehicle ends the vehicle's open episode: the worker
    evaluates a rule only where it applies, so the alert stayed open for ever, receivers
    never got `alert.ended`, and the rule enabled again opened a second alert for it."""

    async def open_episode(
        self, session: AsyncSession, team: Team, rule: AlertRule
    ) -> tuple[Device, Alert]:
        """A vehicle whose last processed fix is LAST_FIX, speeding for 4 minutes till then."""
        last_fix = self.LAST_FIX
        device = await make_device(session, team.org, speed_limit_kmh=80)
        await make_device_state(session, device, last_fix_time=last_fix)
        details = {"end_time": None, "limit_kmh": 80.0, "max_speed": 108.0}
        alert = await make_alert(
            session, device, last_fix - timedelta(minutes=4), rule, details=details
        )
        return device, alert

    async def ended_events(self, session: AsyncSession, team: Team) -> list[dict[str, Any]]:
        rows = await session.scalars(
            select(WebhookDelivery).where(
                col(WebhookDelivery.org_id) == team.org.id,
                col(WebhookDelivery.event_type) == "alert.ended",
            )
        )
        return [row.payload for row in rows.all()]

    LAST_FIX = datetime(2026, 7, 1, 10, 5, tzinfo=UTC)

    @pytest.fixture
    async def rule(self, session: AsyncSession, team: Team) -> AlertRule:
        """An overspeed rule of the team's organization, which has a receiver of alerts."""
        endpoint = WebhookEndpoint(
            org_id=team.org.id,
            url="https://hooks.example/alerts",
            secret_encrypted="x",
            event_types=["alert.created", "alert.ended"],
        )
        session.add(endpoint)
        await session.flush()
        return await make_alert_rule(session, team.org.id, params={"multiplier": 1.0})

    async def test_disabling_a_rule_ends_its_open_alert_at_the_last_fix(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        rule: AlertRule,
    ) -> None:
        _, alert = await self.open_episode(session, team, rule)

        response = await client.patch(
            f"{RULES}/{rule.id}", json={"enabled": False}, headers=bearer(team.manager)
        )

        assert response.status_code == 200
        await session.refresh(alert)
        assert alert.details["end_time"] == "2026-07-01T10:05:00Z"
        assert [event["data"]["id"] for event in await self.ended_events(session, team)] == [
            str(alert.id)
        ]

    async def test_a_vehicle_taken_off_the_list_has_its_episode_ended_the_others_not(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        rule: AlertRule,
    ) -> None:
        _, left = await self.open_episode(session, team, rule)
        kept_device, kept = await self.open_episode(session, team, rule)

        response = await client.patch(
            f"{RULES}/{rule.id}",
            json={"vehicle_ids": [str(kept_device.id)]},
            headers=bearer(team.manager),
        )

        assert response.status_code == 200
        await session.refresh(left)
        await session.refresh(kept)
        assert (left.details["end_time"], kept.details["end_time"]) == (
            "2026-07-01T10:05:00Z",
            None,
        )
        assert len(await self.ended_events(session, team)) == 1

    async def test_a_geofence_rule_pointed_at_another_fence_ends_the_dwell_a_rename_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        depot, yard = (
            Geofence(
                org_id=team.org.id,
                name=name,
                geometry={"type": "Point", "coordinates": [13.4, 52.5]},
                radius_m=100,
            )
            for name in ("Depot", "Yard")
        )
        session.add_all([depot, yard])
        await session.flush()
        params = {"geofence_id": str(depot.id), "min_dwell_s": 0}
        rule = await make_alert_rule(session, team.org.id, AlertType.GEOFENCE_ENTER, params=params)
        _, dwell = await self.open_episode(session, team, rule)

        renamed = await client.patch(
            f"{RULES}/{rule.id}", json={"name": "Depot visits"}, headers=bearer(team.manager)
        )
        await session.refresh(dwell)
        still_open = dwell.details["end_time"]
        moved = await client.patch(
            f"{RULES}/{rule.id}",
            json={"params": {"geofence_id": str(yard.id)}},
            headers=bearer(team.manager),
        )

        assert (renamed.status_code, moved.status_code) == (200, 200)
        await session.refresh(dwell)
        assert (still_open, dwell.details["end_time"]) == (None, "2026-07-01T10:05:00Z")

    async def test_deleting_a_rule_tells_receivers_its_open_alert_ended(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        rule: AlertRule,
    ) -> None:
        _, alert = await self.open_episode(session, team, rule)
        alert_id = alert.id

        response = await client.delete(f"{RULES}/{rule.id}", headers=bearer(team.manager))

        assert response.status_code == 204
        (event,) = await self.ended_events(session, team)
        assert (event["data"]["id"], event["data"]["details"]["end_time"]) == (
            str(alert_id),
            "2026-07-01T10:05:00Z",
        )


class TestInactiveVehicles:
    async def test_a_vehicle_whose_limit_is_removed_later_is_listed(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        van = await make_device(session, team.org, speed_limit_kmh=80)
        other = await make_device(session, team.org, speed_limit_kmh=90)
        created = await client.post(RULES, json=overspeed(), headers=bearer(team.manager))
        fixed_limit = await client.post(
            RULES, json=overspeed(limit_kmh=70), headers=bearer(team.manager)
        )

        removed = await client.patch(
            f"/api/v1/vehicles/{van.id}",
            json={"speed_limit_kmh": None},
            headers=bearer(team.manager),
        )
        rule = await client.get(f"{RULES}/{created.json()['id']}", headers=bearer(team.viewer))
        listed = await client.get(RULES, headers=bearer(team.viewer))

        assert created.json()["inactive_vehicle_ids"] == []
        assert removed.status_code == 200
        assert rule.json()["inactive_vehicle_ids"] == [str(van.id)]
        by_id = {r["id"]: r["inactive_vehicle_ids"] for r in listed.json()["items"]}
        assert by_id == {created.json()["id"]: [str(van.id)], fixed_limit.json()["id"]: []}
        assert str(other.id) not in rule.json()["inactive_vehicle_ids"]


class TestDocument:
    def test_the_openapi_document_says_what_applies_and_what_is_refused(
        self, api_app: FastAPI
    ) -> None:
        doc = api_app.openapi()
        read = doc["components"]["schemas"]["AlertRuleRead"]["properties"]
        assert "from now on" in read["applies_from"]["description"]
        assert "limit" in read["inactive_vehicle_ids"]["description"]
        assert "refused (422" in doc["paths"]["/api/v1/alert-rules"]["post"]["description"]
