"""Tenancy and roles by construction, checked over every route of the app: a route added
later without authentication, without the organization scope or with the wrong role order
fails here."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_api.deps import current_user, manager_user, owner_user
from services.api.tests.api_support import Bearer, Team, error_code, one_of_everything

# Routes anyone may call: health, docs, the landing and account pages (static HTML), and the
# sign-in flows (they authenticate by what they are sent: a password, a refresh token, a
# one-time token).
PUBLIC = {
    "/api/health",
    "/api/ready",
    "/metrics",
    "/api/openapi.json",
    "/api/docs",
    "/api/docs/static",
    "/api/redoc",
    "/api",
    "/api/",
    "/",
    "/favicon.ico",
    "/api/static",
    "/api/account/invitation",
    "/api/account/password-reset",
    "/docs/oauth2-redirect",
    "/api/v1/auth/token",
    "/api/v1/auth/refresh",
    "/api/v1/auth/logout",
    "/api/v1/auth/invitations/accept",
    "/api/v1/auth/password-reset",
}
# The WebSocket authenticates with its first message (tested in ws/test_stream.py).
SELF_AUTHENTICATED = {"/api/v1/stream"}

# A valid body for each write that takes one, so validation never answers before the
# check under test.
BODIES: dict[str, Any] = {
    "update_device": {"name": "Renamed"},
    "update_geofence": {"name": "Renamed"},
    "update_alert_rule": {"name": "Renamed"},
    "update_webhook": {"enabled": True},
    "change_user_role": {"role": "viewer"},
}
# DESIGN: "owners also manage their team, vehicles and ingest keys" (and the webhooks, whose
# secrets they hold): what only an owner may call. Every other change takes a manager.
OWNER_ONLY = {("POST", "/api/v1/vehicles")}
OWNER_PREFIXES = ("/api/v1/users", "/api/v1/api-keys", "/api/v1/webhooks")
# Query parameters each list needs besides the foreign vehicle_id.
QUERIES: dict[str, dict[str, str]] = {
    "summarize": {"from": "2026-01-01", "to": "2026-01-08"},
    "export_summary": {"from": "2026-01-01", "to": "2026-01-08"},
    "export_trips": {"from": "2026-01-01", "to": "2026-01-08"},
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    path_params: tuple[str, ...]
    query_params: frozenset[str]
    has_body: bool

    def url(self, ids: dict[str, uuid.UUID]) -> str:
        path = self.path
        for name in self.path_params:
            path = path.replace("{" + name + "}", str(ids[name]))
        return path


def operations(app: FastAPI) -> Iterator[Operation]:
    for path, methods in app.openapi()["paths"].items():
        for method, op in methods.items():
            params = op.get("parameters", [])
            yield Operation(
                method.upper(),
                path,
                op["operationId"],
                tuple(p["name"] for p in params if p["in"] == "path"),
                frozenset(p["name"] for p in params if p["in"] == "query"),
                "requestBody" in op,
            )


def private_operations(app: FastAPI) -> list[Operation]:
    return [op for op in operations(app) if op.path not in PUBLIC]


def calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from calls(sub)


async def send(
    client: httpx.AsyncClient,
    op: Operation,
    ids: dict[str, uuid.UUID],
    headers: dict[str, str],
    params: dict[str, Any] | None = None,
) -> httpx.Response:
    body = BODIES.get(op.operation_id, {}) if op.has_body else None
    return await client.request(
        op.method,
        op.url(ids),
        json=body,
        params={**QUERIES.get(op.operation_id, {}), **(params or {})},
        headers=headers,
    )


@pytest.fixture
async def foreign_ids(session: AsyncSession, other_team: Team) -> dict[str, uuid.UUID]:
    """One of everything, in another organization: the ids an attacker would try."""
    return await one_of_everything(session, other_team.org, other_team.viewer)


class TestRouteWalk:
    def test_every_private_route_resolves_the_caller_and_its_organization(
        self, api_app: FastAPI
    ) -> None:
        seen = set()
        for context in iter_route_contexts(api_app.routes):
            route = context.original_route
            path = context.path
            seen.add(path)
            if path in PUBLIC:
                continue
            if isinstance(route, APIWebSocketRoute):
                assert path in SELF_AUTHENTICATED, f"{path}: a WebSocket that is not known"
                continue
            assert isinstance(route, APIRoute), f"{path}: not an API route"
            assert current_user in set(calls(route.dependant)), (
                f"{path}: no CurrentUser (authentication and organization scope) in its"
                " dependencies"
            )
        assert seen >= SELF_AUTHENTICATED

    def test_every_change_declares_its_role_and_only_owner_routes_take_an_owner(
        self, api_app: FastAPI
    ) -> None:
        """Roles by construction: a change without ManagerUser or OwnerUser, or an owner
        check on a route DESIGN gives managers (or the reverse), fails here. Changing one's
        own profile and password (/me) is every member's."""
        wrong, checked = [], 0
        for context in iter_route_contexts(api_app.routes):
            route, path = context.original_route, context.path
            if path in PUBLIC or not isinstance(route, APIRoute):
                continue
            deps = set(calls(route.dependant))
            for method in route.methods - {"HEAD"}:
                checked += 1
                owner_only = path.startswith(OWNER_PREFIXES) or (method, path) in OWNER_ONLY
                if (owner_user in deps) != owner_only:
                    wrong.append(f"{method} {path}: owner check {owner_user in deps}")
                elif (
                    method != "GET"
                    and not path.startswith("/api/v1/me")
                    and not deps & {manager_user, owner_user}
                ):
                    wrong.append(f"{method} {path}: no role")
        assert checked > 40
        assert not wrong

    async def test_every_private_route_answers_401_without_a_token(
        self, api_app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        ops = private_operations(api_app)
        assert len(ops) > 40
        ids = {name: uuid.uuid4() for op in ops for name in op.path_params}
        for op in ops:
            response = await send(client, op, ids, {})
            assert response.status_code == 401, f"{op.method} {op.path}"
            assert error_code(response) == "unauthorized"
            assert response.headers["WWW-Authenticate"] == "Bearer"


class TestCrossOrganization:
    async def test_every_route_answers_404_for_another_organizations_ids(
        self,
        api_app: FastAPI,
        client: httpx.AsyncClient,
        team: Team,
        bearer: Bearer,
        foreign_ids: dict[str, uuid.UUID],
    ) -> None:
        headers = bearer(team.owner)
        checked = set()
        for op in private_operations(api_app):
            if op.path_params:
                response = await send(client, op, foreign_ids, headers)
            elif "vehicle_id" in op.query_params:
                response = await send(
                    client, op, {}, headers, {"vehicle_id": str(foreign_ids["vehicle_id"])}
                )
            else:
                continue
            checked.add(op.operation_id)
            assert response.status_code == 404, f"{op.method} {op.path}: {response.text}"
            assert error_code(response) == "not_found"
        assert {"update_device", "get_trip", "acknowledge_alert", "list_positions"} <= checked

    async def test_rules_cannot_refer_to_another_organizations_vehicles_or_geofences(
        self,
        client: httpx.AsyncClient,
        team: Team,
        bearer: Bearer,
        foreign_ids: dict[str, uuid.UUID],
    ) -> None:
        headers = bearer(team.manager)
        by_vehicle = await client.post(
            "/api/v1/alert-rules",
            json={
                "name": "x",
                "type": "idle",
                "params": {"min_duration_s": 60},
                "vehicle_ids": [str(foreign_ids["vehicle_id"])],
            },
            headers=headers,
        )
        by_geofence = await client.post(
            "/api/v1/alert-rules",
            json={
                "name": "x",
                "type": "geofence_enter",
                "params": {"geofence_id": str(foreign_ids["geofence_id"])},
            },
            headers=headers,
        )
        assert (by_vehicle.status_code, by_geofence.status_code) == (404, 404)

    async def test_lists_never_show_another_organizations_rows(
        self,
        api_app: FastAPI,
        client: httpx.AsyncClient,
        team: Team,
        bearer: Bearer,
        foreign_ids: dict[str, uuid.UUID],
    ) -> None:
        headers = bearer(team.owner)
        foreign = {str(v) for v in foreign_ids.values()}
        for op in private_operations(api_app):
            if op.method != "GET" or op.path_params or op.operation_id in QUERIES:
                continue
            response = await client.get(op.path, headers=headers)
            assert response.status_code == 200, op.path
            assert not [fid for fid in foreign if fid in response.text], op.path


class TestRoles:
    async def test_viewers_cannot_write_anything(
        self, api_app: FastAPI, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        headers = bearer(team.viewer)
        writes = [
            op
            for op in private_operations(api_app)
            if op.method != "GET" and not op.path.startswith("/api/v1/me")
        ]
        assert len(writes) >= 20
        ids = {name: uuid.uuid4() for op in writes for name in op.path_params}
        for op in writes:
            response = await send(client, op, ids, headers)
            assert response.status_code == 403, f"{op.method} {op.path}"
            assert error_code(response) == "forbidden"

    async def test_managers_cannot_use_owner_routes(
        self, api_app: FastAPI, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        headers = bearer(team.manager)
        ops = [
            op
            for op in private_operations(api_app)
            if op.path.startswith(OWNER_PREFIXES) or (op.method, op.path) in OWNER_ONLY
        ]
        assert ("POST", "/api/v1/vehicles") in {(op.method, op.path) for op in ops}
        ids = {name: uuid.uuid4() for op in ops for name in op.path_params}
        for op in ops:
            response = await send(client, op, ids, headers)
            assert response.status_code == 403, f"{op.method} {op.path}"

    async def test_checks_run_401_then_403_then_404(
        self,
        client: httpx.AsyncClient,
        team: Team,
        bearer: Bearer,
        foreign_ids: dict[str, uuid.UUID],
    ) -> None:
        url = f"/api/v1/vehicles/{foreign_ids['vehicle_id']}"
        anonymous = await client.patch(url, json={"name": "x"})
        viewer = await client.patch(url, json={"name": "x"}, headers=bearer(team.viewer))
        manager = await client.patch(url, json={"name": "x"}, headers=bearer(team.manager))
        assert [anonymous.status_code, viewer.status_code, manager.status_code] == [401, 403, 404]
