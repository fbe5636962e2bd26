"""Faults on a running stack of its own, each ending with the data checked for loss and
duplicates against the simulator's scripted drives.

The stack is started the way `make up` starts it (the code path of conftest's `stack`
fixture) with the recovery work's test-mode intervals: the reconciler every second, batch
leases of a few seconds, short retry backoffs. The scenarios run one after the other on it;
each leaves it healthy:

- the processing worker SIGKILLed (its whole process group) while it holds a batch, then
  restarted: the batch's lease expires and the reconciler sends it again;
- an app process (ingest and api) SIGKILLed while clients keep calling: Traefik answers
  502/503/504 at once, never hangs; `make up`'s code path restarts the apps;
- Postgres stopped during a push: ingest answers 503 with Retry-After and the pusher retries;
- Redis stopped for about 30 s during a push: ingest keeps answering 202 and the reconciler
  catches up once Redis is back.

Every scenario has its own organization and vehicles; at its end each vehicle holds its
script's fixes exactly once, and the trips, stops and alerts the script expects.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from milepost_devstack.config import Ports, StackConfig
from milepost_devstack.process import processes_in
from milepost_devstack.stack import Stack
from milepost_sim.fixes import SimFix
from milepost_sim.push import Pusher
from milepost_sim.script import Script, scripted_drive
from tests.e2e.journey_support import (
    REQUEST_TIMEOUT_S,
    Tenant,
    add_script_rules,
    answered,
    assert_matches_script,
    chunks,
    create_tenant,
    drive_start,
    eventually,
    operator_client,
    wait_until_processed,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("e2e-faults")]

# The recovery work's settings at test-mode values (DECISIONS.md: about 1 s in tests).
FAULT_SETTINGS = {
    "MILEPOST_WORKER__RECONCILE_INTERVAL_S": "1",
    "MILEPOST_WORKER__RECONCILE_PENDING_AFTER_S": "2",
    "MILEPOST_WORKER__BATCH_LEASE_S": "5",
    "MILEPOST_WORKER__BATCH_LEASE_RENEW_S": "1",
    "MILEPOST_WORKER__RETRY_BACKOFF_BASE_S": "0.5",
    "MILEPOST_WORKER__RETRY_BACKOFF_MAX_S": "3",
    "MILEPOST_WORKER__SOFT_SHUTDOWN_TIMEOUT_S": "2",
}
REDIS_OUTAGE_S = 30.0
# Shorter than the worker's retries of a batch caught by the outage (8, at most 3 s apart).
POSTGRES_OUTAGE_S = 4.0
# A gateway error must come at once; this is generous for a loaded two-core machine.
GATEWAY_ANSWER_S = 3.0
GATEWAY_ERRORS = frozenset({502, 503, 504})


@pytest.fixture(scope="module")
def fault_stack() -> Iterator[Stack]:
    """A second stack, started as conftest's `stack` fixture starts the session's."""
    state_dir = Path(tempfile.mkdtemp(prefix="milepost-faults-"))
    environ = {key: value for key, value in os.environ.items() if not key.startswith("MILEPOST_")}
    stack = Stack(
        StackConfig(state_dir, Ports.free(), durable=False), environ=environ | FAULT_SETTINGS
    )
    try:
        stack.up(timeout=240)
        yield stack
    finally:
        # Also when `up` failed (its error carries the failing component's log tail).
        stack.down()
        leftovers = processes_in(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)
    assert leftovers == [], "processes of the fault stack survived `down`"


@pytest.fixture(scope="module")
def operator(fault_stack: Stack) -> Iterator[httpx.Client]:
    with operator_client(fault_stack) as client:
        yield client


@pytest.fixture
def healthy(fault_stack: Stack) -> Iterator[Stack]:
    """The fault stack, checked healthy after the scenario (the next one starts from there)."""
    yield fault_stack
    unhealthy = [s.name for s in fault_stack.status() if not s.healthy]
    assert unhealthy == [], "a scenario left the fault stack unhealthy"


@dataclass
class Fleet:
    """One organization's scripted vehicles: each drive's fixes, expectations and rules."""

    stack: Stack
    tenant: Tenant
    scripts: list[Script]

    @property
    def fixes(self) -> list[SimFix]:
        """Every fix in time order, as a gateway forwarding the fleet would send them."""
        return sorted(
            (f for s in self.scripts for f in s.fixes), key=lambda f: (f.fix_time, f.unique_id)
        )

    def assert_complete(self, operator: httpx.Client) -> list[dict[str, Any]]:
        """Every fix stored once and processed; each vehicle's trips, stops and alerts are
        its script's. Returns the organization's batches."""
        batches = wait_until_processed(
            operator, self.tenant.org_id, len(self.fixes), stack=self.stack
        )
        for script in self.scripts:
            assert_matches_script(self.tenant.owner, self.tenant.vehicles[script.unique_id], script)
        return batches


@pytest.fixture
def fleet(
    request: pytest.FixtureRequest, fault_stack: Stack, operator: httpx.Client
) -> Iterator[Callable[[range], Fleet]]:
    """A factory: an organization with a scripted vehicle per seed, each with its geofence
    and rules."""
    made: list[Fleet] = []

    def make(seeds: range) -> Fleet:
        start = drive_start()
        run = uuid.uuid4().hex[:8]
        scripts = [
            scripted_drive(seed, start, unique_id=f"fault-{seed}-{run}", name=f"Truck {seed}")
            for seed in seeds
        ]
        name = f"{request.node.name[:40]} {run}"
        tenant = create_tenant(fault_stack, operator, name, [s.vehicle() for s in scripts])
        for script in scripts:
            add_script_rules(tenant, script)
        made.append(Fleet(fault_stack, tenant, scripts))
        return made[-1]

    yield make
    for each in made:
        each.tenant.close()


@dataclass(frozen=True)
class Answer:
    method: str
    path: str
    status: int | None  # None: no answer at all (a transport error)
    seconds: float
    headers: httpx.Headers
    body: bytes
    at: float  # time.monotonic() of the answer

    @property
    def app(self) -> str:
        return self.path.split("/")[1]


class RecordingTransport(httpx.HTTPTransport):
    """Records each answer (status, time taken, headers, body) as the client receives it."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[Answer] = []
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = time.monotonic()
        path = request.url.path
        if path.startswith("/ingest/osmand/"):
            path = "/ingest/osmand/{api_key}"
        try:
            response = super().handle_request(request)
            body = response.read()
        except httpx.TransportError:
            self._add(Answer(request.method, path, None, 0.0, httpx.Headers(), b"", started))
            raise
        now = time.monotonic()
        self._add(
            Answer(
                request.method,
                path,
                response.status_code,
                now - started,
                response.headers,
                body,
                now,
            )
        )
        return response

    def _add(self, answer: Answer) -> None:
        with self._lock:
            self.answers.append(answer)

    def recorded(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)


def recording_client(
    stack: Stack, transport: RecordingTransport, token: str | None = None
) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        base_url=stack.gateway_url, headers=headers, timeout=REQUEST_TIMEOUT_S, transport=transport
    )


@dataclass
class Background:
    """A function run in a thread; its exception is raised again by `result`."""

    target: Callable[[], Any]
    error: BaseException | None = None
    value: Any = None
    _thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.value = self.target()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            self.error = exc

    def start(self) -> Background:
        self._thread.start()
        return self

    def result(self, timeout: float) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"still running after {timeout:.0f} s"
        if self.error is not None:
            raise self.error
        return self.value


def push_batches(
    pusher: Pusher, fixes: Sequence[SimFix], size: int, interval_s: float = 0.0
) -> list[str]:
    """Push `fixes` in batches of `size`, one batch every `interval_s` at most (a gateway's
    pace); returns the batch ids. A batch the pusher gave up on fails the scenario."""
    ids = []
    next_at = time.monotonic()
    for chunk in chunks(fixes, size):
        answer = pusher.push_batch(chunk)
        assert answer is not None, "the pusher gave up on a batch"
        assert answer["errors"] == []
        ids.append(answer["batch_id"])
        next_at += interval_s
        time.sleep(max(0.0, next_at - time.monotonic()))
    return ids


def batch_status(client: httpx.Client, api_key: str, batch_id: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"}
    return answered(client.get(f"/ingest/v1/batches/{batch_id}", headers=headers), 200)  # type: ignore[no-any-return]


def batch_claimed(client: httpx.Client, api_key: str, batch_id: str) -> bool:
    """Whether a worker claimed the batch (or already processed it)."""
    return batch_status(client, api_key, batch_id)["status"] in {"processing", "processed"}


def kill_group(stack: Stack, name: str) -> None:
    """SIGKILL the component's whole process group (a worker's prefork children too) and
    wait until every process of it is gone: a child still exiting holds the ports it
    inherited (the worker's metrics port), and the restart would find them taken."""
    record = stack.processes.running(name)
    assert record is not None, f"{name} is not running"
    os.killpg(record.pid, signal.SIGKILL)
    eventually(lambda: not group_alive(record.pid), 10, f"{name}'s processes gone after SIGKILL")


def group_alive(pgid: int) -> bool:
    """Whether a process of the group runs yet (a zombie has closed its files: not counted)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            state, _ppid, pgrp = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


class TestFaults:
    def test_worker_killed_mid_batch_then_restarted(
        self, healthy: Stack, operator: httpx.Client, fleet: Callable[[range], Fleet]
    ) -> None:
        stack = healthy
        fleets: list[Fleet] = []
        caught: dict[str, Any] | None = None
        # A batch of twelve vehicles' drives takes the worker a few hundred milliseconds; in
        # the rare case it ends between the status poll and the signal, the next fleet's
        # batch is tried.
        for attempt in range(3):
            trucks = fleet(range(40 + 12 * attempt, 52 + 12 * attempt))
            fleets.append(trucks)
            with Pusher(stack.gateway_url, trucks.tenant.api_key) as pusher:
                answer = pusher.push_batch(trucks.fixes)
                assert answer is not None
                claimed = partial(
                    batch_claimed, pusher.client, trucks.tenant.api_key, answer["batch_id"]
                )
                # 50 polls a second at most, with the fleet's own key: its rate limit allows
                # 600 a minute.
                eventually(claimed, 10, "the batch claimed by the worker", interval=0.02)
                kill_group(stack, "worker")
            batch = f"/admin/v1/ingest-batches/{answer['batch_id']}"
            held = answered(operator.get(batch), 200)
            stack.start_component("worker", timeout=120)
            if held["status"] == "processing":
                caught = held
                break

        assert caught is not None, "the worker was never killed mid-batch"
        assert caught["lease_holder"] is not None
        for trucks in fleets:
            trucks.assert_complete(operator)
        again = answered(operator.get(f"/admin/v1/ingest-batches/{caught['id']}"), 200)
        assert again["attempts"] >= 2
        assert again["lease_holder"] is None

    def test_apps_killed_while_clients_call_then_restarted(
        self, healthy: Stack, operator: httpx.Client, fleet: Callable[[range], Fleet]
    ) -> None:
        stack = healthy
        trucks = fleet(range(50, 53))
        fixes = trucks.fixes
        phoned = fixes[-12:]
        pushing = RecordingTransport()
        reading = RecordingTransport()
        stop_reading = threading.Event()

        def push() -> None:
            client = recording_client(stack, pushing)
            # Retrying about once a second until the apps are back (up to a minute and a half).
            with Pusher(
                stack.gateway_url,
                trucks.tenant.api_key,
                fmt="ndjson",
                client=client,
                max_attempts=90,
                max_wait_s=1.0,
            ) as pusher:
                push_batches(pusher, fixes[: -len(phoned)], 20, interval_s=0.15)
                for fix in phoned:
                    assert pusher.push_osmand(fix)

        def read() -> None:
            with recording_client(stack, reading, trucks.tenant.owner_token) as client:
                # Five a second: well inside the api's per-principal rate limit.
                while not stop_reading.wait(0.2):
                    client.get("/api/v1/vehicles")

        pusher_thread = Background(push).start()
        reader_thread = Background(read).start()
        try:
            eventually(lambda: len(pushing.recorded()) >= 4, 60, "the first batches pushed")
            kill_group(stack, "ingest")
            kill_group(stack, "api")
            killed_at = time.monotonic()

            def seen_down(answers: Callable[[], list[Answer]]) -> bool:
                return any(a.status in GATEWAY_ERRORS and a.at > killed_at for a in answers())

            eventually(lambda: seen_down(pushing.recorded), 30, "ingest's outage seen")
            eventually(lambda: seen_down(reading.recorded), 30, "the api's outage seen")
            stack.up(timeout=120)
            pusher_thread.result(timeout=180)
            eventually(lambda: reading.recorded()[-1].status == 200, 30, "the api back")
        finally:
            stop_reading.set()
        reader_thread.result(timeout=30)

        answers = pushing.recorded() + reading.recorded()
        errors = [a for a in answers if a.status != 200 and a.status != 202]
        assert errors, "no client met the outage"
        assert {a.status for a in errors} <= GATEWAY_ERRORS
        slow = [
            (a.path, a.status, round(a.seconds, 2)) for a in errors if a.seconds > GATEWAY_ANSWER_S
        ]
        assert slow == []
        assert {a.app for a in errors} == {"ingest", "api"}
        trucks.assert_complete(operator)

    def test_postgres_stopped_during_a_push(
        self, healthy: Stack, operator: httpx.Client, fleet: Callable[[range], Fleet]
    ) -> None:
        stack = healthy
        trucks = fleet(range(53, 56))
        pushing = RecordingTransport()

        def push() -> list[str]:
            client = recording_client(stack, pushing)
            with Pusher(
                stack.gateway_url,
                trucks.tenant.api_key,
                client=client,
                max_attempts=20,
                max_wait_s=10,
            ) as pusher:
                return push_batches(pusher, trucks.fixes, 20, interval_s=0.15)

        pusher_thread = Background(push).start()
        eventually(lambda: len(pushing.recorded()) >= 4, 60, "the first batches pushed")
        stack.stop_component("postgres")
        stopped_at = time.monotonic()
        try:
            eventually(
                lambda: any(a.status == 503 for a in pushing.recorded()), 30, "ingest answering 503"
            )
            eventually(
                lambda: time.monotonic() - stopped_at >= POSTGRES_OUTAGE_S, 30, "the outage's end"
            )
        finally:
            stack.start_component("postgres")
        pusher_thread.result(timeout=180)

        refused = [a for a in pushing.recorded() if a.status != 202]
        assert refused
        assert {a.status for a in refused} == {503}
        for answer in refused:
            assert int(answer.headers["Retry-After"]) >= 1
            assert answer.headers["Content-Type"] == "application/json"
            assert httpx.Response(503, content=answer.body).json()["error"]["code"] == "unavailable"
        trucks.assert_complete(operator)

    def test_redis_stopped_for_thirty_seconds_during_a_push(
        self, healthy: Stack, operator: httpx.Client, fleet: Callable[[range], Fleet]
    ) -> None:
        stack = healthy
        trucks = fleet(range(56, 59))
        fixes = trucks.fixes
        third = len(fixes) // 3
        before, during, after = fixes[:third], fixes[third : 2 * third], fixes[2 * third :]
        pushing = RecordingTransport()
        with (
            recording_client(stack, pushing) as client,
            Pusher(
                stack.gateway_url, trucks.tenant.api_key, fmt="ndjson", compress=True, client=client
            ) as pusher,
        ):
            push_batches(pusher, before, 10)
            stack.stop_component("redis")
            try:
                size = 5
                pace = REDIS_OUTAGE_S / max(1, -(-len(during) // size))
                outage_ids = push_batches(pusher, during, size, interval_s=pace)
                waiting = {
                    batch_status(client, trucks.tenant.api_key, b)["status"] for b in outage_ids
                }
            finally:
                stack.start_component("redis")
            push_batches(pusher, after, 10)
            retries = pusher.stats.retries

        assert retries == 0
        assert {a.status for a in pushing.recorded()} <= {200, 202}
        assert waiting == {"received"}
        trucks.assert_complete(operator)
