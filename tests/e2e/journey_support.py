"""What the journeys and the fault scenarios share: tenants set up through the gateway as an
operator and an owner would, scripted drives checked against what the public API answers, a
webhook receiver and a live-stream client.

Everything goes through the gateway. The expectations come from the simulator's scripted
drives (`milepost_sim.script`), which derive them from the drive's construction, never from
the worker.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from milepost_devstack.stack import Stack
from milepost_sim.script import Script, scripted_drive

T = TypeVar("T")

OWNER_PASSWORD = "an owner's long enough password"
REQUEST_TIMEOUT_S = 30.0
# Processing waits: generous, the suite shares two cores with other stacks.
PROCESSING_TIMEOUT_S = 90.0
# Alerts reaching the live stream and the webhook receiver once processed.
DELIVERY_TIMEOUT_S = 60.0


def eventually(check: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """The first truthy value `check` returns within `timeout` seconds (polled)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(interval)


def drive_start() -> datetime:
    """Two hours ago, on a whole second: the drive lasts about an hour and ends in the past."""
    return (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)


def drives(*seeds: int) -> list[Script]:
    """One scripted drive per seed, from `drive_start`, with tracker ids unique to this run."""
    start = drive_start()
    run = uuid.uuid4().hex[:8]
    return [
        scripted_drive(seed, start, unique_id=f"van-{seed}-{run}", name=f"Van {seed}")
        for seed in seeds
    ]


def answered(response: httpx.Response, status: int) -> Any:
    """The JSON body of `response`, which must have `status`."""
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path} -> "
        f"{response.status_code}: {response.text[:500]}"
    )
    return response.json() if response.content else None


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


@dataclass
class AuditTrail:
    """The mutations a test made, by the request id the gateway's answer carried."""

    actions: dict[str, str] = field(default_factory=dict)

    def record(self, response: httpx.Response, action: str) -> None:
        self.actions[response.headers["X-Request-ID"]] = action


def gateway_client(stack: Stack, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=REQUEST_TIMEOUT_S)


def operator_client(stack: Stack, trail: AuditTrail | None = None) -> httpx.Client:
    """A client logged in to admin as the stack's first operator (from its secrets file)."""
    credentials = stack.credentials()
    login = {"username": credentials.operator_email, "password": credentials.operator_password}
    with gateway_client(stack) as anonymous:
        response = anonymous.post("/admin/v1/auth/token", data=login)
    token = answered(response, 200)["access_token"]
    if trail is not None:
        trail.record(response, "auth.login")
    return gateway_client(stack, token)


@dataclass
class Tenant:
    """An organization set up through admin, with its owner logged in to the public API."""

    org_id: str
    owner_id: str
    owner_email: str
    owner_token: str
    owner: httpx.Client
    api_key: str
    api_key_id: str
    vehicles: dict[str, str]  # unique_id -> vehicle id

    def close(self) -> None:
        self.owner.close()

    def __enter__(self) -> Tenant:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def create_tenant(
    stack: Stack,
    operator: httpx.Client,
    name: str,
    vehicles: Sequence[dict[str, Any]],
    trail: AuditTrail | None = None,
) -> Tenant:
    """The operator creates the organization, its owner, `vehicles` and an ingest key (JSON
    batches and OsmAnd); the owner then logs in to the public API."""
    trail = trail if trail is not None else AuditTrail()
    response = operator.post("/admin/v1/organizations", json={"name": name})
    org_id = answered(response, 201)["id"]
    trail.record(response, "organizations.create")

    email = f"owner-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": OWNER_PASSWORD, "role": "owner"}
    response = operator.post(f"/admin/v1/organizations/{org_id}/users", json=body)
    owner_id = answered(response, 201)["id"]
    trail.record(response, "users.create")

    ids = {}
    for vehicle in vehicles:
        response = operator.post(f"/admin/v1/organizations/{org_id}/devices", json=vehicle)
        ids[vehicle["unique_id"]] = answered(response, 201)["id"]
        trail.record(response, "devices.register")

    issue = {"name": f"{name} gateway", "scopes": ["ingest", "ingest:osmand"]}
    response = operator.post(f"/admin/v1/organizations/{org_id}/api-keys", json=issue)
    key = answered(response, 201)
    trail.record(response, "api_keys.issue")

    with gateway_client(stack) as anonymous:
        response = anonymous.post(
            "/api/v1/auth/token", data={"username": email, "password": OWNER_PASSWORD}
        )
    token = answered(response, 200)["access_token"]
    trail.record(response, "auth.login")
    return Tenant(
        org_id, owner_id, email, token, gateway_client(stack, token), key["key"], key["id"], ids
    )


def add_script_rules(
    tenant: Tenant, script: Script, trail: AuditTrail | None = None
) -> tuple[str, list[str]]:
    """The owner creates the script's geofence and the alert rules its expectations assume,
    for the script's vehicle only; returns the geofence id and the rule ids."""
    trail = trail if trail is not None else AuditTrail()
    response = tenant.owner.post("/api/v1/geofences", json=script.geofence.to_api())
    geofence_id = answered(response, 201)["id"]
    trail.record(response, "geofences.create")
    rule_ids = []
    for rule in script.alert_rules(geofence_id, [tenant.vehicles[script.unique_id]]):
        response = tenant.owner.post("/api/v1/alert-rules", json=rule)
        rule_ids.append(answered(response, 201)["id"])
        trail.record(response, "alert_rules.create")
    return geofence_id, rule_ids


def org_batches(operator: httpx.Client, org_id: str) -> list[dict[str, Any]]:
    params: dict[str, str | int] = {"org_id": org_id, "limit": 1000}
    return answered(operator.get("/admin/v1/ingest-batches", params=params), 200)["items"]  # type: ignore[no-any-return]


def wait_until_processed(
    operator: httpx.Client,
    org_id: str,
    accepted: int,
    timeout: float = PROCESSING_TIMEOUT_S,
    stack: Stack | None = None,
) -> list[dict[str, Any]]:
    """The organization's batches once they accepted `accepted` fixes in all and every one is
    processed, as the operator sees them. On timeout the message carries the batches' states
    and, given the `stack`, the last lines of its worker's and beat's logs."""
    seen: list[dict[str, Any]] = []

    def done() -> bool:
        seen[:] = org_batches(operator, org_id)
        return sum(b["accepted"] for b in seen) == accepted and all(
            b["status"] == "processed" for b in seen
        )

    try:
        eventually(done, timeout, "every batch processed", interval=0.5)
    except AssertionError:
        states = [(b["status"], b["accepted"], b["attempts"], b["last_error"]) for b in seen]
        logs = "".join(
            f"\n--- {name}.log\n{stack.processes.log_tail(name, 30)}"
            for name in ("worker", "beat")
            if stack is not None
        )
        raise AssertionError(
            f"batches not all processed with {accepted} fixes accepted in {timeout:.0f} s: "
            f"{states}{logs}"
        ) from None
    return seen


def wait_batch_processed(
    client: httpx.Client, api_key: str, batch_id: str, timeout: float = PROCESSING_TIMEOUT_S
) -> None:
    """Poll the ingest's own batch status (with the key that pushed it)."""
    headers = {"Authorization": f"Bearer {api_key}"}

    def processed() -> bool:
        batch = answered(client.get(f"/ingest/v1/batches/{batch_id}", headers=headers), 200)
        return bool(batch["status"] == "processed")

    eventually(processed, timeout, f"batch {batch_id} processed", interval=0.1)


def listed(owner: httpx.Client, path: str, vehicle_id: str) -> list[dict[str, Any]]:
    limit = 10_000 if path.endswith("/positions") else 1000
    response = owner.get(path, params={"vehicle_id": vehicle_id, "limit": limit})
    page = answered(response, 200)
    assert page["next_cursor"] is None
    return page["items"]  # type: ignore[no-any-return]


def assert_matches_script(owner: httpx.Client, vehicle_id: str, script: Script) -> None:
    """The vehicle's stored positions are the script's fixes, each once, and its trips,
    stops and alerts are those the script expects."""
    positions = listed(owner, f"/api/v1/vehicles/{vehicle_id}/positions", vehicle_id)
    assert [moment(p["fix_time"]) for p in positions] == [f.fix_time for f in script.fixes]

    trips = listed(owner, "/api/v1/trips", vehicle_id)
    assert [(moment(t["start_time"]), t["end_time"] and moment(t["end_time"])) for t in trips] == [
        (t.start_time, t.end_time) for t in script.expected_trips
    ]
    for trip, expected in zip(trips, script.expected_trips, strict=True):
        assert (trip["start_lat"], trip["start_lon"]) == pytest.approx(
            (expected.start_lat, expected.start_lon), abs=1e-6
        )
        assert (trip["end_lat"], trip["end_lon"]) == pytest.approx(
            (expected.end_lat, expected.end_lon), abs=1e-6
        )
        # The API rounds metres and km/h to 0.1 at the edge.
        assert trip["distance_m"] == pytest.approx(expected.distance_m, abs=0.1)
        assert trip["max_speed"] == pytest.approx(expected.max_speed, abs=0.1)

    stops = listed(owner, "/api/v1/stops", vehicle_id)
    assert [
        (moment(s["start_time"]), s["end_time"] and moment(s["end_time"]), s["lat"], s["lon"])
        for s in stops
    ] == [
        (s.start_time, s.end_time, pytest.approx(s.lat, abs=1e-6), pytest.approx(s.lon, abs=1e-6))
        for s in script.expected_stops
    ]

    alerts = listed(owner, "/api/v1/alerts", vehicle_id)
    assert [alert_key(a) for a in alerts] == expected_alert_keys(script)
    for alert, wanted in zip(alerts, script.expected_alerts, strict=True):
        assert (alert["lat"], alert["lon"]) == pytest.approx((wanted.lat, wanted.lon), abs=1e-6)
        details = {name: alert["details"].get(name) for name in wanted.details}
        assert details == {
            name: pytest.approx(value, abs=0.1) if isinstance(value, float) else value
            for name, value in wanted.details.items()
        }


def alert_key(alert: dict[str, Any]) -> tuple[str, datetime]:
    return alert["type"], moment(alert["occurred_at"])


def expected_alert_keys(script: Script) -> list[tuple[str, datetime]]:
    return [(a.type, a.occurred_at) for a in script.expected_alerts]


@dataclass(frozen=True)
class Delivery:
    headers: httpx.Headers
    body: bytes

    def event(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


class Receiver:
    """A webhook receiver on loopback that records every POST and answers 204."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.deliveries.append(Delivery(httpx.Headers(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/hooks/milepost"

    def received(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def signature_valid(secret: str, delivery: Delivery) -> bool:
    """`Milepost-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{raw body}">`, checked here
    from the header's definition, not with the product's own verifier."""
    fields = dict(part.split("=", 1) for part in delivery.headers["Milepost-Signature"].split(","))
    message = fields["t"].encode() + b"." + delivery.body
    expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(fields["t"])) < 600
    return fresh and hmac.compare_digest(expected, fields["v1"])


class StreamClient:
    """`WebSocket /api/v1/stream` through the gateway: auth, ready, subscribe to every
    vehicle; messages are collected by a thread until `close`."""

    def __init__(self, stack: Stack, token: str) -> None:
        self._url = stack.gateway_url.replace("http://", "ws://", 1) + "/api/v1/stream"
        self._token = token
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._exit = ExitStack()
        self._connection: ClientConnection | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self.closed_with: str | None = None

    def __enter__(self) -> StreamClient:
        try:
            self._connection = self._exit.enter_context(
                connect(self._url, open_timeout=REQUEST_TIMEOUT_S)
            )
            self._handshake(self._connection)
        except BaseException:
            self._exit.close()
            raise
        self._thread.start()
        return self

    def _handshake(self, connection: ClientConnection) -> None:
        connection.send(json.dumps({"type": "auth", "token": self._token}))
        assert json.loads(connection.recv(timeout=REQUEST_TIMEOUT_S)) == {"type": "ready"}
        connection.send(json.dumps({"type": "subscribe", "vehicle_ids": "all"}))
        subscribed = json.loads(connection.recv(timeout=REQUEST_TIMEOUT_S))
        assert subscribed["type"] == "subscribed", subscribed

    def _read(self) -> None:
        assert self._connection is not None
        try:
            for raw in self._connection:
                with self._lock:
                    self.messages.append(json.loads(raw))
        except ConnectionClosed as closed:
            self.closed_with = str(closed)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m["data"] for m in self.messages if m["type"] == kind]

    def __exit__(self, *_: object) -> None:
        self._exit.close()
        if self._thread.is_alive():
            self._thread.join(timeout=10)


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
