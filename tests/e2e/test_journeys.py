"""End-to-end journeys on the stack `make up` starts, through the gateway only.

An operator sets up a customer, its owner configures alerting, a scripted drive arrives as a
telematics gateway and a phone send it, and every party then sees what the drive must
produce: the owner in the public API and on the live stream, the customer's webhook receiver
in signed events, the operator in the batches and the audit log. Nothing is seeded behind the
stack's back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from milepost_devstack.stack import Stack
from milepost_sim.push import Pusher
from milepost_sim.script import Script
from tests.e2e.journey_support import (
    DELIVERY_TIMEOUT_S,
    AuditTrail,
    Receiver,
    StreamClient,
    Tenant,
    add_script_rules,
    alert_key,
    answered,
    assert_matches_script,
    chunks,
    create_tenant,
    drives,
    eventually,
    expected_alert_keys,
    listed,
    operator_client,
    signature_valid,
    wait_batch_processed,
    wait_until_processed,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def push_drive(stack: Stack, tenant: Tenant, scripts: Sequence[Script]) -> None:
    """The fixes in time order: JSON batches until every vehicle is parked for the last time,
    each processed before the next goes (a gateway forwarding its trackers in order: arrival
    order is the worker's own tests' concern), then the parked fixes one by one as phones
    send them through OsmAnd."""
    last_parking = max(s.fixes[s.phases["park3"][0]].fix_time for s in scripts)
    fixes = sorted((f for s in scripts for f in s.fixes), key=lambda f: (f.fix_time, f.unique_id))
    batched = [f for f in fixes if f.fix_time < last_parking]
    phoned = [f for f in fixes if f.fix_time >= last_parking]
    with Pusher(stack.gateway_url, tenant.api_key, max_attempts=1) as pusher:
        for chunk in chunks(batched, 40):
            answer = pusher.push_batch(chunk)
            assert answer is not None
            assert (answer["accepted"], answer["errors"]) == (len(chunk), [])
            wait_batch_processed(pusher.client, tenant.api_key, answer["batch_id"])
        for fix in phoned:
            assert pusher.push_osmand(fix)
    assert pusher.stats.sent == pusher.stats.accepted + pusher.stats.osmand == len(fixes)


class TestFleetOwnerJourney:
    def test_a_scripted_drive_reaches_owner_stream_webhook_and_operator(self, stack: Stack) -> None:
        began = datetime.now(UTC) - timedelta(minutes=1)
        scripts = drives(21, 22)
        trail = AuditTrail()
        with (
            operator_client(stack, trail) as operator,
            Receiver() as receiver,
            create_tenant(
                stack, operator, "Journey Logistics", [s.vehicle() for s in scripts], trail
            ) as tenant,
        ):
            for script in scripts:
                add_script_rules(tenant, script, trail)
            hook = {"url": receiver.url, "event_types": ["alert.created"]}
            response = tenant.owner.post("/api/v1/webhooks", json=hook)
            secret = answered(response, 201)["secret"]
            trail.record(response, "webhooks.create")
            expected_alerts = sum(len(s.expected_alerts) for s in scripts)

            with StreamClient(stack, tenant.owner_token) as stream:
                push_drive(stack, tenant, scripts)
                batches = wait_until_processed(
                    operator, tenant.org_id, sum(len(s.fixes) for s in scripts), stack=stack
                )
                eventually(
                    lambda: len(stream.of_type("alert")) >= expected_alerts,
                    DELIVERY_TIMEOUT_S,
                    "every alert on the stream",
                )
            eventually(
                lambda: len(receiver.received()) >= expected_alerts,
                DELIVERY_TIMEOUT_S,
                "every alert at the webhook receiver",
            )

            # The owner: the trips, stops and alerts the script expects, nothing else.
            for script in scripts:
                assert_matches_script(tenant.owner, tenant.vehicles[script.unique_id], script)
            stored = {
                alert["id"]: alert
                for vehicle_id in tenant.vehicles.values()
                for alert in listed(tenant.owner, "/api/v1/alerts", vehicle_id)
            }

            # The live stream: each stored alert once.
            streamed = stream.of_type("alert")
            assert sorted(a["id"] for a in streamed) == sorted(stored)
            assert all(alert_key(a) == alert_key(stored[a["id"]]) for a in streamed)
            assert stream.closed_with is None

            # The receiver: each stored alert once, signed with the webhook's secret.
            deliveries = receiver.received()
            events = [d.event() for d in deliveries]
            assert all(signature_valid(secret, d) for d in deliveries)
            assert [d.headers["Milepost-Event-Id"] for d in deliveries] == [e["id"] for e in events]
            assert {e["type"] for e in events} == {"alert.created"}
            assert {e["org_id"] for e in events} == {tenant.org_id}
            assert sorted(e["data"]["id"] for e in events) == sorted(stored)

            # The operator: every batch processed, both doors used; every action audited.
            assert {b["source"] for b in batches} == {"json", "osmand"}
            assert all(b["rejected"] == b["duplicates"] == 0 for b in batches)
            assert_audited(operator, trail, began)

        assert [alert_key(a) for a in sorted(stored.values(), key=alert_key)] == sorted(
            key for s in scripts for key in expected_alert_keys(s)
        )


def assert_audited(operator: httpx.Client, trail: AuditTrail, since: datetime) -> None:
    """Each recorded mutation and login has its audit entry, found by the request id."""
    params: dict[str, str | int] = {"from": since.isoformat(), "limit": 1000}
    logged: dict[str, str] = {}
    while True:
        page = answered(operator.get("/admin/v1/audit-log", params=params), 200)
        logged |= {
            e["request_id"]: e["action"] for e in page["items"] if e["request_id"] in trail.actions
        }
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert logged == trail.actions
