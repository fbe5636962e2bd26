"""Webhook event types: each endpoint subscribes to its own, only those reach it, and the
OpenAPI document says what each event's body is."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain.trips.models import Stop, Trip
from milepost_common.domain.webhooks import delivery as webhook_delivery
from milepost_common.domain.webhooks import events as webhook_events
from milepost_common.domain.webhooks.models import WebhookDelivery
from milepost_common.domain.webhooks.schemas import WebhookEventType
from milepost_common.testing.factories import make_device
from services.api.tests.api_support import Bearer, Team

EVERY_TYPE = [
    "alert.created",
    "alert.ended",
    "trip.started",
    "trip.ended",
    "stop.started",
    "device.offline",
    "device.online",
]


class TestSubscription:
    async def test_each_endpoint_gets_the_types_it_subscribed_to(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        headers = bearer(team.owner)
        trips = await client.post(
            "/api/v1/webhooks",
            json={"url": "https://hooks.example.com/trips", "event_types": ["trip.ended"]},
            headers=headers,
        )
        assert trips.status_code == 201, trips.text
        every = await client.post(
            "/api/v1/webhooks",
            json={"url": "https://hooks.example.com/all", "event_types": EVERY_TYPE},
            headers=headers,
        )
        assert every.status_code == 201, every.text
        assert sorted(every.json()["event_types"]) == sorted(EVERY_TYPE)
        changed = await client.patch(
            f"/api/v1/webhooks/{trips.json()['id']}",
            json={"event_types": ["trip.started", "trip.ended"]},
            headers=headers,
        )
        assert changed.json()["event_types"] == ["trip.ended", "trip.started"]
        device = await make_device(session, team.org)
        now = datetime.now(UTC)
        trip = Trip(
            org_id=team.org.id,
            device_id=device.id,
            start_time=now,
            start_lat=52.0,
            start_lon=13.0,
            end_lat=52.0,
            end_lon=13.0,
        )

        await webhook_delivery.create_deliveries(
            session,
            [
                webhook_events.trip_started(trip, device.name),
                webhook_events.stop_started(
                    Stop(org_id=team.org.id, device_id=device.id, start_time=now, lat=1, lon=2),
                    device.name,
                ),
            ],
            now,
        )

        rows = (
            await session.execute(
                select(col(WebhookDelivery.endpoint_id), col(WebhookDelivery.event_type)).where(
                    col(WebhookDelivery.org_id) == team.org.id
                )
            )
        ).all()
        got = sorted((str(endpoint_id), event_type) for endpoint_id, event_type in rows)
        assert got == sorted(
            [
                (trips.json()["id"], "trip.started"),
                (every.json()["id"], "trip.started"),
                (every.json()["id"], "stop.started"),
            ]
        )

    async def test_an_unknown_event_type_is_422(
        self, client: httpx.AsyncClient, team: Team, bearer: Bearer
    ) -> None:
        response = await client.post(
            "/api/v1/webhooks",
            json={"url": "https://hooks.example.com/x", "event_types": ["trip.paused"]},
            headers=bearer(team.owner),
        )

        assert response.status_code == 422
        assert response.json()["error"]["code"] == "validation_failed"


class TestDocumented:
    async def test_every_event_type_has_its_body_in_the_openapi_webhooks(
        self, client: httpx.AsyncClient
    ) -> None:
        document = (await client.get("/api/openapi.json")).json()

        assert sorted(document["webhooks"]) == sorted(EVERY_TYPE)
        schemas = document["components"]["schemas"]
        for event_type in WebhookEventType:
            body = document["webhooks"][event_type.value]["post"]["requestBody"]
            ref = body["content"]["application/json"]["schema"]["$ref"]
            event = schemas[ref.rsplit("/", 1)[1]]
            assert event["properties"]["type"]["const"] == event_type.value
            assert {"id", "type", "created_at", "org_id", "data"} <= set(event["required"])
        assert "reason" in schemas["TripEndedData"]["required"]
        assert sorted(schemas["WebhookEventType"]["enum"]) == sorted(EVERY_TYPE)

    async def test_receivers_are_told_to_refuse_replays_and_not_to_rely_on_order(
        self, client: httpx.AsyncClient
    ) -> None:
        document = (await client.get("/api/openapi.json")).json()

        for event_type in WebhookEventType:
            terms = document["webhooks"][event_type.value]["post"]["description"]
            # A signature checked without its time is replayable forever, and a plain ==
            # leaks the expected signature by timing.
            assert "5 minutes" in terms
            assert "constant time" in terms
            # A retried event arrives after later ones of the same vehicle.
            assert "not ordered" in terms
