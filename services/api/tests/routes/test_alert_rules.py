"""Overspeed rules that could never fire are refused; one that later cannot fire for a vehicle
says so; every rule says it applies to fixes from its creation on (issue 15, item 9)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.testing.factories import make_device
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
