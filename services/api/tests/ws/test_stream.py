"""The live stream over a real socket (uvicorn in this event loop, the `websockets` client):
authentication and its close codes, subscription, relay from Redis pub/sub, pings, expiry,
and a slow consumer cut off instead of growing memory; the process's one shared Redis
subscription per organization."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from milepost_api.main import create_app
from milepost_api.settings import ApiSettings
from milepost_common.domain.organizations import service as organization_service
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.principals import SYSTEM
from milepost_common.domain.users.models import OrgRole, User
from milepost_common.live import LiveEvent, org_channel
from milepost_common.testing.factories import (
    DEFAULT_PASSWORD,
    make_device,
    make_organization,
    make_user,
)
from services.api.tests.api_support import Bearer, Team, serving
from services.api.tests.ws.stream_support import (
    RawClient,
    authenticated,
    close_code,
    eventually,
    hub_connections,
    publish,
    receive,
    subscribers,
    watching,
)


class TestAuthentication:
    async def test_no_auth_in_time_closes_4408(self, address: str) -> None:
        async with connect(address) as ws:
            assert await close_code(ws) == 4408

    async def test_bad_token_closes_4401(self, address: str) -> None:
        async with connect(address) as ws:
            await ws.send('{"type": "auth", "token": "nope"}')
            assert await close_code(ws) == 4401

    async def test_expired_token_closes_4401(
        self, address: str, team: Team, bearer: Bearer
    ) -> None:
        async with connect(address) as ws:
            await ws.send(
                orjson.dumps(
                    {"type": "auth", "token": bearer(team.viewer, ttl_s=-5)["Authorization"][7:]}
                ).decode()
            )
            assert await close_code(ws) == 4401

    async def test_the_stream_closes_when_the_token_expires(
        self, address: str, team: Team, bearer: Bearer
    ) -> None:
        async with connect(address) as ws:
            await authenticated(ws, bearer(team.viewer, ttl_s=2))
            assert await close_code(ws) == 4401


class TestMalformedMessages:
    """What a client sends wrongly is answered in the protocol, never with the server's
    internal-error close (1011) and a traceback in its log."""

    async def test_a_binary_first_message_is_not_an_auth_4401(self, address: str) -> None:
        async with connect(address) as ws:
            await ws.send(b'{"type": "auth", "token": "nope"}')
            assert await close_code(ws) == 4401

    async def test_a_binary_message_later_is_an_unknown_one(
        self, address: str, team: Team, bearer: Bearer
    ) -> None:
        async with connect(address) as ws:
            await authenticated(ws, bearer(team.viewer))
            await ws.send(b"\x00\x01")
            assert await receive(ws) == {"type": "error", "message": "Unknown message type."}
            await ws.send('{"type": "subscribe", "vehicle_ids": "all"}')
            assert await receive(ws) == {"type": "subscribed", "vehicle_ids": "all"}


class TestSubscriptionLimit:
    async def test_more_than_10000_entries_are_refused_unread(
        self, address: str, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        """Counted before they are read: 10,001 entries are refused even when they name one
        vehicle, so a huge list costs nothing to refuse."""
        device = await make_device(session, team.org)
        async with connect(address) as ws:
            await authenticated(ws, bearer(team.viewer))
            for count, expected in (
                (10_000, {"type": "subscribed", "vehicle_ids": [str(device.id)]}),
                (
                    10_001,
                    {
                        "type": "error",
                        "message": 'vehicle_ids: a list of at most 10,000 ids, or "all".',
                    },
                ),
            ):
                ids = [str(device.id)] * count
                await ws.send(orjson.dumps({"type": "subscribe", "vehicle_ids": ids}).decode())
                assert await receive(ws) == expected


class TestOpenStreamsPerUser:
    """A user holds at most ``stream_max_per_user`` streams in a process (2 here)."""

    async def test_one_more_closes_with_1008_and_a_closed_one_frees_its_seat(
        self, address: str, team: Team, bearer: Bearer
    ) -> None:
        viewer = bearer(team.viewer)
        token = viewer["Authorization"].removeprefix("Bearer ")

        async def third_stream() -> int | None:
            """The close code of one more of the viewer's streams (None: it was let in)."""
            async with connect(address) as ws:
                await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
                try:
                    await receive(ws)
                except ConnectionClosed as closed:
                    return closed.rcvd.code if closed.rcvd else None
                return None

        async with watching(address, viewer), watching(address, viewer):
            assert await third_stream() == 1008
            async with watching(address, bearer(team.manager)):  # another user: unaffected
                pass

        async def seat_free() -> bool:
            return await third_stream() is None

        await eventually(seat_free)


class TestOpenStreamsPerOrganization:
    """An organization's users hold at most ``stream_max_per_org`` streams in a process (3
    here): each of its events is handed to every one of them in the loop all tenants share."""

    async def test_one_more_closes_with_1008_and_other_organizations_are_unaffected(
        self, address: str, team: Team, other_team: Team, bearer: Bearer
    ) -> None:
        async def another_stream(owner: User) -> int | None:
            """The close code of one more stream of ``owner`` (None: it was let in)."""
            token = bearer(owner)["Authorization"].removeprefix("Bearer ")
            async with connect(address) as ws:
                await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
                try:
                    await receive(ws)
                except ConnectionClosed as closed:
                    return closed.rcvd.code if closed.rcvd else None
                return None

        viewer, manager = bearer(team.viewer), bearer(team.manager)
        async with (
            watching(address, viewer),
            watching(address, viewer),
            watching(address, manager),
        ):
            assert await another_stream(team.owner) == 1008
            assert await another_stream(other_team.owner) is None


class TestRelay:
    async def test_subscribed_alerts_arrive_and_others_do_not(
        self,
        address: str,
        session: AsyncSession,
        redis: Redis,
        team: Team,
        other_team: Team,
        bearer: Bearer,
    ) -> None:
        mine = await make_device(session, team.org)
        unwatched = await make_device(session, team.org)
        theirs = await make_device(session, other_team.org)
        async with connect(address) as ws:
            await authenticated(ws, bearer(team.viewer))
            await ws.send(
                orjson.dumps(
                    {"type": "subscribe", "vehicle_ids": [str(mine.id), str(theirs.id)]}
                ).decode()
            )
            assert await receive(ws) == {"type": "subscribed", "vehicle_ids": [str(mine.id)]}

            await publish(redis, other_team.org.id, theirs.id, n=1)
            await publish(redis, team.org.id, unwatched.id, n=2)
            await publish(redis, team.org.id, mine.id, n=3, rule="overspeed")

            assert await receive(ws) == {"type": "alert", "data": {"n": 3, "rule": "overspeed"}}

    async def test_pings_every_interval(self, address: str, team: Team, bearer: Bearer) -> None:
        async with connect(address) as ws:
            await authenticated(ws, bearer(team.viewer))
            assert await receive(ws, pings=True) == {"type": "ping"}

    async def test_a_batchs_burst_reaches_a_client_that_reads(
        self, address: str, session: AsyncSession, redis: Redis, team: Team, bearer: Bearer
    ) -> None:
        # The worker publishes a batch's events in one pipeline (one per vehicle): read in one
        # go, they overflowed the queue (4 here, 256 by default) of a client reading at once.
        device = await make_device(session, team.org)
        async with watching(address, bearer(team.viewer)) as ws:
            events = [
                LiveEvent(type="alert", org_id=team.org.id, vehicle_id=device.id, data={"i": i})
                for i in range(50)
            ]
            async with redis.pipeline(transaction=False) as pipe:
                for event in events:
                    pipe.publish(org_channel(team.org.id), event.model_dump_json())
                await pipe.execute()

            received = [(await receive(ws))["data"]["i"] for _ in events]

        assert received == list(range(50))

    async def test_slow_consumer_is_cut_off_with_4429(
        self, address: str, session: AsyncSession, redis: Redis, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        client = RawClient(address)
        await client.open()
        try:
            await client.authenticate(bearer(team.viewer))
            await client.subscribe_all()

            # The client stops reading: the kernel buffers fill, then the server's sends
            # block; its per-connection queue holds 4 messages and one send may take 0.5 s.
            blob = "x" * 256_000
            for i in range(100):
                await publish(redis, team.org.id, device.id, i=i, blob=blob)
            await asyncio.sleep(2)

            assert await client.close_code() == 4429
        finally:
            client.close()


@dataclass(frozen=True)
class Served:
    app: FastAPI
    base: str  # host:port

    @property
    def stream(self) -> str:
        return f"ws://{self.base}/api/v1/stream"


@pytest.fixture
async def recheck_served(
    settings_factory: Callable[..., ApiSettings], committed_database: str, redis: Redis
) -> AsyncIterator[Served]:
    """An app with its own pool (its streams re-check the principal every second)."""
    settings = settings_factory(
        ApiSettings,
        db={"url": committed_database},
        auth={"principal_cache_s": 1},
        api={"stream_ping_interval_s": 60},
    )
    app = create_app(settings)
    async with LifespanManager(app), serving(app) as served:
        yield Served(app, served)


async def committed_team(app: FastAPI) -> Team:
    async with app.state.db.sessionmaker() as session:
        org = await make_organization(session)
        team = Team(
            org,
            await make_user(session, org, role=OrgRole.OWNER),
            await make_user(session, org, role=OrgRole.MANAGER),
            await make_user(session, org, role=OrgRole.VIEWER),
        )
        await session.commit()
    return team


async def closed_within(ws: ClientConnection, seconds: float) -> int | None:
    async with asyncio.timeout(seconds):
        return await close_code(ws)


class TestPrincipalRecheck:
    async def test_deactivating_the_user_closes_the_stream_with_4401(
        self, recheck_served: Served, bearer: Bearer
    ) -> None:
        team = await committed_team(recheck_served.app)
        async with watching(recheck_served.stream, bearer(team.viewer)) as ws:
            async with httpx.AsyncClient(base_url=f"http://{recheck_served.base}") as http:
                deactivated = await http.post(
                    f"/api/v1/users/{team.viewer.id}/deactivate", headers=bearer(team.owner)
                )
            assert deactivated.status_code == 200

            assert await closed_within(ws, 5) == 4401

    async def test_suspending_the_organization_closes_the_stream_with_4401(
        self, recheck_served: Served, bearer: Bearer
    ) -> None:
        team = await committed_team(recheck_served.app)
        async with watching(recheck_served.stream, bearer(team.viewer)) as ws:
            async with recheck_served.app.state.db.sessionmaker() as session:
                org = await session.get(Organization, team.org.id)
                assert org is not None
                await organization_service.suspend_organization(session, SYSTEM, org)
                await session.commit()

            assert await closed_within(ws, 5) == 4401

    async def test_changing_the_password_closes_the_streams_of_older_tokens_with_4401(
        self, recheck_served: Served, bearer: Bearer
    ) -> None:
        """As on HTTP: a password changed (or reset) ends every session begun before it."""
        team = await committed_team(recheck_served.app)
        async with watching(recheck_served.stream, bearer(team.viewer)) as ws:
            await asyncio.sleep(1.1)  # tokens issued in the second of the change are kept
            async with httpx.AsyncClient(base_url=f"http://{recheck_served.base}") as http:
                changed = await http.post(
                    "/api/v1/me/password",
                    headers=bearer(team.viewer),
                    json={
                        "current_password": DEFAULT_PASSWORD,
                        "new_password": "a new one, long enough",
                    },
                )
            assert changed.status_code == 200

            assert await closed_within(ws, 5) == 4401

    async def test_an_active_principal_keeps_its_stream(
        self, recheck_served: Served, bearer: Bearer
    ) -> None:
        team = await committed_team(recheck_served.app)
        async with watching(recheck_served.stream, bearer(team.viewer)) as ws:
            await asyncio.sleep(1.5)  # a re-check

            assert ws.state is State.OPEN


class TestSharedSubscription:
    async def test_clients_of_an_organization_share_one_redis_subscription(
        self,
        stream_app: FastAPI,
        address: str,
        session: AsyncSession,
        redis: Redis,
        team: Team,
        other_team: Team,
        bearer: Bearer,
    ) -> None:
        device = await make_device(session, team.org)
        theirs = await make_device(session, other_team.org)
        async with (
            watching(address, bearer(team.viewer)) as first,
            watching(address, bearer(team.manager)) as second,
            watching(address, bearer(other_team.viewer)) as outsider,
        ):
            assert await subscribers(redis, team.org.id) == 1
            assert await subscribers(redis, other_team.org.id) == 1
            assert len(await hub_connections(redis, stream_app)) == 1

            await publish(redis, team.org.id, device.id, "position", n=1)
            await publish(redis, other_team.org.id, theirs.id, n=2)

            expected = {"type": "position", "data": {"n": 1}}
            assert await receive(first) == expected
            assert await receive(second) == expected
            # Published after the other organization's position: its client got only this.
            assert await receive(outsider) == {"type": "alert", "data": {"n": 2}}

    async def test_the_channel_is_unsubscribed_when_the_last_client_leaves(
        self, address: str, session: AsyncSession, redis: Redis, team: Team, bearer: Bearer
    ) -> None:
        device = await make_device(session, team.org)
        async with watching(address, bearer(team.viewer)) as staying:
            async with watching(address, bearer(team.manager)):
                assert await subscribers(redis, team.org.id) == 1
            await publish(redis, team.org.id, device.id, n=1)
            assert await receive(staying) == {"type": "alert", "data": {"n": 1}}
            assert await subscribers(redis, team.org.id) == 1

        async def unsubscribed() -> bool:
            return await subscribers(redis, team.org.id) == 0

        await eventually(unsubscribed)

    async def test_a_slow_consumer_is_cut_off_while_the_others_keep_receiving(
        self, address: str, session: AsyncSession, redis: Redis, team: Team, bearer: Bearer
    ) -> None:
        flooded = await make_device(session, team.org)
        quiet = await make_device(session, team.org)
        client = RawClient(address)
        await client.open()
        try:
            await client.authenticate(bearer(team.viewer))
            await client.subscribe_all()

            async with watching(address, bearer(team.manager), [str(quiet.id)]) as other:
                blob = "x" * 256_000
                for i in range(100):
                    await publish(redis, team.org.id, flooded.id, i=i, blob=blob)
                await asyncio.sleep(2)
                assert await client.close_code() == 4429

                await publish(redis, team.org.id, quiet.id, n=1)
                assert await receive(other) == {"type": "alert", "data": {"n": 1}}
                assert await subscribers(redis, team.org.id) == 1
        finally:
            client.close()
