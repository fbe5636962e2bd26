"""Two organizations side by side on the stack `make up` starts, through the gateway only.

The first has something behind every kind of id its routes take (a processed drive with trips,
alerts, webhook deliveries; its rules, keys and users). The second, with its own owner, viewer
and ingest key, walks every route of the three apps' OpenAPI documents with the first's ids:
another organization's ids get 404 (403 where the role alone refuses), a credential of the
wrong realm 401, and pushing the first's tracker with the second's key is answered 202 with
the item rejected as `unknown_device`, nothing stored for the first (DECISIONS.md, "Whole
system").
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from milepost_devstack.stack import Stack
from milepost_sim.fixes import SimFix, iso
from milepost_sim.push import Pusher
from milepost_sim.script import Script
from tests.e2e.journey_support import (
    DELIVERY_TIMEOUT_S,
    Receiver,
    Tenant,
    add_script_rules,
    answered,
    create_tenant,
    drives,
    eventually,
    gateway_client,
    listed,
    operator_client,
    org_batches,
    wait_batch_processed,
    wait_until_processed,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


@dataclass
class FirstOrganization:
    """Organization A with something behind every kind of id, and the ids by path
    parameter name (api, admin, ingest)."""

    tenant: Tenant
    script: Script
    receiver: Receiver
    ids: dict[str, dict[str, str]]
    positions: int


@dataclass
class SecondOrganization:
    tenant: Tenant
    viewer_token: str
    unique_id: str


@pytest.fixture(scope="module")
def operator(stack: Stack) -> Iterator[httpx.Client]:
    with operator_client(stack) as client:
        yield client


@pytest.fixture(scope="module")
def first(stack: Stack, operator: httpx.Client) -> Iterator[FirstOrganization]:
    [script] = drives(31)
    with (
        create_tenant(stack, operator, "First Freight", [script.vehicle()]) as tenant,
        Receiver() as receiver,
    ):
        vehicle_id = tenant.vehicles[script.unique_id]
        geofence_id, rule_ids = add_script_rules(tenant, script)
        hook = {"url": receiver.url, "event_types": ["alert.created"]}
        webhook_id = answered(tenant.owner.post("/api/v1/webhooks", json=hook), 201)["id"]
        with Pusher(stack.gateway_url, tenant.api_key) as pusher:
            answer = pusher.push_batch(script.fixes)
        assert answer is not None
        wait_until_processed(operator, tenant.org_id, len(script.fixes), stack=stack)
        eventually(
            lambda: len(receiver.received()) == len(script.expected_alerts),
            DELIVERY_TIMEOUT_S,
            "the first organization's alerts delivered",
        )
        owner = tenant.owner
        trip_id = listed(owner, "/api/v1/trips", vehicle_id)[0]["id"]
        alert_id = listed(owner, "/api/v1/alerts", vehicle_id)[0]["id"]
        deliveries = answered(owner.get(f"/api/v1/webhooks/{webhook_id}/deliveries"), 200)
        operators = answered(operator.get("/admin/v1/operators"), 200)["items"]
        api = {
            "vehicle_id": vehicle_id,
            "trip_id": trip_id,
            "alert_id": alert_id,
            "geofence_id": geofence_id,
            "rule_id": rule_ids[0],
            "webhook_id": webhook_id,
            "user_id": tenant.owner_id,
            "key_id": tenant.api_key_id,
        }
        admin = {
            "org_id": tenant.org_id,
            "user_id": tenant.owner_id,
            "operator_id": operators[0]["id"],
            "device_id": vehicle_id,
            "key_id": tenant.api_key_id,
            "batch_id": answer["batch_id"],
            "delivery_id": deliveries["items"][0]["id"],
        }
        ingest = {"batch_id": answer["batch_id"]}
        yield FirstOrganization(
            tenant,
            script,
            receiver,
            {"api": api, "admin": admin, "ingest": ingest},
            len(script.fixes),
        )


@pytest.fixture(scope="module")
def second(stack: Stack, operator: httpx.Client) -> Iterator[SecondOrganization]:
    unique_id = f"second-{uuid.uuid4().hex[:8]}"
    vehicles = [{"unique_id": unique_id, "name": "B van"}]
    with create_tenant(stack, operator, "Second Shipping", vehicles) as tenant:
        email = f"viewer-{uuid.uuid4().hex[:8]}@example.com"
        body = {"email": email, "password": "a viewer's long enough password", "role": "viewer"}
        answered(operator.post(f"/admin/v1/organizations/{tenant.org_id}/users", json=body), 201)
        with gateway_client(stack) as anonymous:
            login = {"username": email, "password": body["password"]}
            viewer = answered(anonymous.post("/api/v1/auth/token", data=login), 200)
        yield SecondOrganization(tenant, viewer["access_token"], unique_id)


@dataclass(frozen=True)
class Operation:
    app: str
    method: str
    path: str
    secured: bool
    body: dict[str, Any] | None
    query: frozenset[str]

    def url(self, ids: dict[str, str]) -> str:
        url = self.path
        for name in path_parameters(self.path):
            assert name in ids, f"no id of the first organization for {{{name}}} in {self.path}"
            url = url.replace(f"{{{name}}}", ids[name])
        return url

    def call(self, client: httpx.Client, url: str, token: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return client.request(self.method, url, headers=headers, json=self.body)


def minimal_body(document: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any] | None:
    """A JSON body with the required fields of the operation's schema (each its first example
    or enum value, else a placeholder), so that a foreign id is judged, not the body."""
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return {} if content else None
    schema = resolve(document, content["application/json"].get("schema", {}))
    body: dict[str, Any] = {}
    for name in schema.get("required", []):
        field = resolve(document, schema["properties"][name])
        if field.get("examples"):
            body[name] = field["examples"][0]
        elif field.get("enum"):
            body[name] = field["enum"][-1]
        else:
            placeholders = {"string": "x", "number": 1, "integer": 1, "boolean": True}
            body[name] = placeholders.get(field.get("type", ""), {})
    return body


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def path_parameters(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


@pytest.fixture(scope="module")
def operations(stack: Stack) -> list[Operation]:
    """Every operation of the three OpenAPI documents, as the gateway serves them."""
    found = []
    with gateway_client(stack) as client:
        for app in ("api", "admin", "ingest"):
            document = answered(client.get(f"/{app}/openapi.json"), 200)
            default_security = document.get("security")
            for path, item in document["paths"].items():
                for method, operation in item.items():
                    if method not in {"get", "post", "put", "patch", "delete"}:
                        continue
                    query = frozenset(
                        p["name"] for p in operation.get("parameters", []) if p["in"] == "query"
                    )
                    secured = bool(operation.get("security", default_security))
                    body = minimal_body(document, operation)
                    found.append(Operation(app, method.upper(), path, secured, body, query))
    assert len({o.app for o in found}) == 3
    return found


def mentions(response: httpx.Response, ids: Sequence[str]) -> list[str]:
    return [value for value in ids if value in response.text]


def error_code(response: httpx.Response) -> str:
    """The error envelope's code ("" for an answer without one)."""
    if not response.headers.get("Content-Type", "").startswith("application/json"):
        return ""
    body = response.json()
    return str(body["error"]["code"]) if isinstance(body, dict) and "error" in body else ""


class TestTwoOrganizations:
    def test_the_second_reaches_no_id_of_the_first_through_the_api(
        self,
        stack: Stack,
        first: FirstOrganization,
        second: SecondOrganization,
        operations: list[Operation],
    ) -> None:
        ids = first.ids["api"]
        secret_ids = sorted(set(ids.values()) | {first.tenant.org_id})
        answers: dict[tuple[str, str, str], tuple[int, str]] = {}
        leaks: dict[tuple[str, str, str], list[str]] = {}
        principals = {"owner": second.tenant.owner_token, "viewer": second.viewer_token}
        with gateway_client(stack) as client:
            for operation in (o for o in operations if o.app == "api" and o.secured):
                for role, token in principals.items():
                    key = (role, operation.method, operation.path)
                    if path_parameters(operation.path):
                        response = operation.call(client, operation.url(ids), token)
                        answers[key] = (response.status_code, error_code(response))
                        continue
                    if operation.method != "GET":
                        continue
                    # Lists and reports: nothing of the first, even when asked for its vehicle.
                    queries: list[dict[str, str]] = [{}]
                    if "vehicle_id" in operation.query:
                        queries.append({"vehicle_id": ids["vehicle_id"]})
                    for query in queries:
                        response = client.get(
                            operation.path,
                            params=query,
                            headers={"Authorization": f"Bearer {token}"},
                        )
                        allowed = {200, 404, 422} | ({403} if role == "viewer" else set())
                        assert response.status_code in allowed, (key, response.text)
                        if found := mentions(response, secret_ids):
                            leaks[key] = found
            # A rule naming the first organization's vehicle and geofence is refused.
            rule = {
                "name": "borrowed",
                "type": "geofence_enter",
                "params": {"geofence_id": ids["geofence_id"]},
                "vehicle_ids": [ids["vehicle_id"]],
            }
            borrowed = second.tenant.owner.post("/api/v1/alert-rules", json=rule)

        assert leaks == {}
        refusals = {(404, "not_found")} | {(403, "forbidden")}
        unexpected = {
            key: answer
            for key, answer in answers.items()
            if answer != (404, "not_found") and not (key[0] == "viewer" and answer in refusals)
        }
        assert unexpected == {}
        assert len(answers) >= 2 * 20  # every id-taking route, for both principals
        assert borrowed.status_code in {404, 422}, borrowed.text
        assert_first_untouched(first)

    def test_wrong_realm_credentials_are_refused_by_every_secured_route(
        self,
        stack: Stack,
        operator: httpx.Client,
        first: FirstOrganization,
        second: SecondOrganization,
        operations: list[Operation],
    ) -> None:
        operator_token = operator.headers["Authorization"].removeprefix("Bearer ")
        # The realm each app accepts; every other credential must get 401.
        credentials = {
            "api token": second.tenant.owner_token,
            "admin token": operator_token,
            "api key": second.tenant.api_key,
        }
        accepted = {"api": "api token", "admin": "admin token", "ingest": "api key"}
        statuses: dict[tuple[str, str, str, str], int] = {}
        with gateway_client(stack) as client:
            for operation in operations:
                if not operation.secured and operation.app != "ingest":
                    continue
                if operation.path.startswith("/ingest/osmand/") or operation.path.endswith(
                    ("/health", "/ready", "/openapi.json")
                ):
                    continue
                url = operation.url(first.ids[operation.app])
                for name, token in credentials.items():
                    if name == accepted[operation.app]:
                        continue
                    response = operation.call(client, url, token)
                    statuses[(name, operation.app, operation.method, operation.path)] = (
                        response.status_code
                    )
                    if response.status_code == 401:
                        assert response.json()["error"]["code"] == "unauthorized"

        assert {key: status for key, status in statuses.items() if status != 401} == {}
        assert {key[1] for key in statuses} == {"api", "admin", "ingest"}
        assert_first_untouched(first)

    def test_the_second_key_stores_nothing_for_the_first(
        self,
        stack: Stack,
        operator: httpx.Client,
        first: FirstOrganization,
        second: SecondOrganization,
    ) -> None:
        vehicle_id = first.ids["api"]["vehicle_id"]
        batches_before = len(org_batches(operator, first.tenant.org_id))
        when = first.script.fixes[-1].fix_time + timedelta(seconds=15)
        borrowed = SimFix(first.script.unique_id, when, 52.5, 13.4, 10.0)
        own = SimFix(second.unique_id, when, 52.5, 13.4, 10.0)

        with Pusher(stack.gateway_url, second.tenant.api_key, max_attempts=1) as pusher:
            answer = pusher.push_batch([borrowed, own])
            phoned = pusher.client.get(
                f"/ingest/osmand/{second.tenant.api_key}",
                params=SimFix(
                    first.script.unique_id, when + timedelta(seconds=5), 52.5, 13.4, 0.0
                ).to_osmand(),
            )
            foreign_batch = pusher.client.get(
                f"/ingest/v1/batches/{first.ids['ingest']['batch_id']}",
                headers={"Authorization": f"Bearer {second.tenant.api_key}"},
            )
            assert answer is not None
            wait_batch_processed(pusher.client, second.tenant.api_key, answer["batch_id"])

        assert (answer["accepted"], answer["rejected"]) == (1, 1)
        assert [(e["index"], e["code"]) for e in answer["errors"]] == [(0, "unknown_device")]
        assert phoned.status_code == 400
        assert foreign_batch.status_code == 404
        assert foreign_batch.json()["error"]["code"] == "not_found"
        positions = listed(
            first.tenant.owner, f"/api/v1/vehicles/{vehicle_id}/positions", vehicle_id
        )
        assert len(positions) == first.positions
        assert max(p["fix_time"] for p in positions) == iso(first.script.fixes[-1].fix_time)
        vehicle = answered(first.tenant.owner.get(f"/api/v1/vehicles/{vehicle_id}"), 200)
        assert vehicle["last_fix_time"] == iso(first.script.fixes[-1].fix_time)
        assert len(org_batches(operator, first.tenant.org_id)) == batches_before


def assert_first_untouched(first: FirstOrganization) -> None:
    """The first organization's owner, key, configuration, alerts and receiver are as they
    were: no call of the second changed, revoked, deleted, acknowledged or pinged anything."""
    owner, ids = first.tenant.owner, first.ids["api"]
    me = answered(owner.get("/api/v1/me"), 200)
    assert me["id"] == first.tenant.owner_id
    assert me["role"] == "owner"
    for path in ("geofences", "alert-rules", "webhooks"):
        key = {"geofences": "geofence_id", "alert-rules": "rule_id", "webhooks": "webhook_id"}[path]
        item = answered(owner.get(f"/api/v1/{path}/{ids[key]}"), 200)
        assert item.get("enabled", True) is True
    alert = answered(owner.get("/api/v1/alerts", params={"vehicle_id": ids["vehicle_id"]}), 200)
    assert all(a["acknowledged_at"] is None for a in alert["items"])
    key = answered(owner.get(f"/api/v1/api-keys/{ids['key_id']}"), 200)
    assert key["revoked_at"] is None
    trips = listed(owner, "/api/v1/trips", ids["vehicle_id"])
    assert [t["id"] for t in trips][:1] == [ids["trip_id"]]
    events = Counter(d.event()["type"] for d in first.receiver.received())
    assert events == {"alert.created": len(first.script.expected_alerts)}
