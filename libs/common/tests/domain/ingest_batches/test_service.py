"""Ingest batch use cases against Postgres: record, answer a repeated Idempotency-Key (also
while the first request is still in its transaction), mark queued, read, replay."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.cache import TtlCache
from milepost_common.db import create_database, unit_of_work
from milepost_common.domain.api_keys.models import Scope
from milepost_common.domain.audit.models import AuditEntry
from milepost_common.domain.ingest_batches import operators as batch_operators
from milepost_common.domain.ingest_batches import service as batch_service
from milepost_common.domain.ingest_batches.errors import (
    BatchBusy,
    BatchNotFound,
    IdempotencyKeyReused,
)
from milepost_common.domain.ingest_batches.models import BatchSource, BatchStatus, IngestBatch
from milepost_common.domain.ingest_batches.validation import DeviceRef
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.positions.models import Position
from milepost_common.domain.principals import Principal, PrincipalKind
from milepost_common.settings import DbSettings
from milepost_common.testing.factories import (
    make_device,
    make_operator,
    make_organization,
    principal_for,
)

DeviceCache = TtlCache[tuple[uuid.UUID, str], DeviceRef]


def key_actor(org: Organization) -> Principal:
    return Principal(
        PrincipalKind.API_KEY, None, org.id, "mp_test", scopes=frozenset({Scope.INGEST.value})
    )


def item(unique_id: str, minutes_ago: float = 5, **fields: Any) -> dict[str, Any]:
    moment = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return {
        "device_id": unique_id,
        "fix_time": moment.isoformat(),
        "lat": 1.5,
        "lon": 2.5,
        **fields,
    }


async def push(
    session: AsyncSession,
    actor: Principal,
    items: list[Any],
    *,
    key: str | None = None,
    body_hash: str | None = None,
) -> batch_service.BatchOutcome:
    now = datetime.now(UTC)
    submission = batch_service.Submission(BatchSource.JSON, items, now, key, body_hash)
    return await batch_service.ingest_batch(session, actor, submission)


async def positions_of(session: AsyncSession, batch_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Position).where(col(Position.batch_id) == batch_id)
    )
    return int(count or 0)


class TestIngestBatch:
    async def test_batch_and_positions_in_one_transaction(self, session: AsyncSession) -> None:
        org = await make_organization(session)
        device = await make_device(session, org)
        outcome = await push(session, key_actor(org), [item(device.unique_id), item("x")])
        assert outcome.created
        assert outcome.response == {
            "batch_id": str(outcome.batch_id),
            "accepted": 1,
            "rejected": 1,
            "duplicates": 0,
            "errors": [{"index": 1, "code": "unknown_device", "message": "Unknown device."}],
        }
        batch = await session.get(IngestBatch, outcome.batch_id)
        assert batch is not None
        assert (batch.status, batch.accepted, batch.device_ids) == (
            BatchStatus.RECEIVED, 1, [str(device.id)],
        )  # fmt: skip
        assert await positions_of(session, outcome.batch_id) == 1

    async def test_of_two_fixes_at_one_time_the_first_is_stored_in_a_large_fleet(
        self, session: AsyncSession
    ) -> None:
        # With thousands of devices the planner hashed the batch's fixes, and the last of
        # two repeats was stored instead of the first.
        org = await make_organization(session)
        device = await make_device(session, org)
        await session.execute(
            text(
                "INSERT INTO devices (id, org_id, unique_id, name, disabled, created_at,"
                " updated_at) SELECT gen_random_uuid(), :org, 'fleet-' || n, 'v', false, now(),"
                " now() FROM generate_series(1, 5000) AS n"
            ),
            {"org": org.id},
        )
        await session.execute(text("ANALYZE devices"))
        first, repeat = item(device.unique_id, lat=10.0), item(device.unique_id, lat=11.0)
        repeat["fix_time"] = first["fix_time"]
        outcome = await push(session, key_actor(org), [first, repeat])
        assert (outcome.response["accepted"], outcome.response["duplicates"]) == (1, 1)
        lat = await session.scalar(
            select(Position.lat).where(col(Position.batch_id) == outcome.batch_id)
        )
        assert lat == 10.0

    async def test_same_key_and_body_answers_the_first_outcome(self, session: AsyncSession) -> None:
        org = await make_organization(session)
        device = await make_device(session, org)
        items = [item(device.unique_id)]
        first = await push(session, key_actor(org), items, key="k", body_hash="h")
        again = await push(session, key_actor(org), items, key="k", body_hash="h")
        assert (again.created, again.batch_id, again.response) == (
            False, first.batch_id, first.response,
        )  # fmt: skip
        with pytest.raises(IdempotencyKeyReused):
            await push(session, key_actor(org), items, key="k", body_hash="other")


class TestIngestFixes:
    async def test_fixes_of_unknown_devices_are_left_out(self, session: AsyncSession) -> None:
        org = await make_organization(session)
        device = await make_device(session, org)
        fixes = [item(device.unique_id), item("stranger"), item(device.unique_id, 4)]
        outcome = await batch_service.ingest_fixes(
            session, key_actor(org), fixes, datetime.now(UTC)
        )
        assert outcome.known == [True, False, True]
        assert outcome.batch is not None
        assert outcome.batch.response["accepted"] == 2
        batch = await session.get(IngestBatch, outcome.batch.batch_id)
        assert batch is not None
        assert (batch.source, batch.rejected) == (BatchSource.OSMAND, 0)

    async def test_no_known_device_records_nothing(self, session: AsyncSession) -> None:
        org = await make_organization(session)
        outcome = await batch_service.ingest_fixes(
            session, key_actor(org), [item("stranger")], datetime.now(UTC)
        )
        assert (outcome.known, outcome.batch) == ([False], None)
        batches = select(func.count()).where(col(IngestBatch.org_id) == org.id)
        assert await session.scalar(batches) == 0


class TestConcurrentIdempotencyKey:
    async def _setup(self, url: str) -> tuple[Any, Principal, str]:
        db = create_database(DbSettings(url=url))
        async with unit_of_work(db) as session:
            org = await make_organization(session)
            device = await make_device(session, org)
        return db, key_actor(org), device.unique_id

    async def test_the_second_waits_for_the_first_and_answers_its_outcome(
        self, committed_database: str
    ) -> None:
        db, actor, unique_id = await self._setup(committed_database)
        items = [item(unique_id)]
        try:
            async with unit_of_work(db) as first_session:
                first = await push(first_session, actor, items, key="race", body_hash="h")
                second = asyncio.create_task(self._push_alone(db, actor, items, "h"))
                await asyncio.sleep(0.3)
                assert not second.done()  # held by the unique index until the first commits
            outcome = await asyncio.wait_for(second, 5)
            async with unit_of_work(db) as session:
                batches = await session.scalar(select(func.count()).select_from(IngestBatch))
        finally:
            await db.dispose()
        assert (outcome.created, outcome.batch_id) == (False, first.batch_id)
        assert outcome.response == first.response
        assert batches == 1

    async def test_another_body_racing_the_first_is_a_conflict(
        self, committed_database: str
    ) -> None:
        db, actor, unique_id = await self._setup(committed_database)
        try:
            async with unit_of_work(db) as first_session:
                await push(first_session, actor, [item(unique_id)], key="race", body_hash="h1")
                second = asyncio.create_task(
                    self._push_alone(db, actor, [item(unique_id, 1)], "h2")
                )
                await asyncio.sleep(0.2)
            with pytest.raises(IdempotencyKeyReused):
                await asyncio.wait_for(second, 5)
        finally:
            await db.dispose()

    async def test_the_second_goes_through_when_the_first_rolls_back(
        self, committed_database: str
    ) -> None:
        db, actor, unique_id = await self._setup(committed_database)
        items = [item(unique_id)]
        try:
            async with db.sessionmaker() as first_session:
                await first_session.begin()
                await push(first_session, actor, items, key="race", body_hash="h")
                second = asyncio.create_task(self._push_alone(db, actor, items, "h"))
                await asyncio.sleep(0.2)
                await first_session.rollback()
            outcome = await asyncio.wait_for(second, 5)
        finally:
            await db.dispose()
        assert outcome.created
        assert outcome.response["accepted"] == 1

    @staticmethod
    async def _push_alone(
        db: Any, actor: Principal, items: list[Any], body_hash: str
    ) -> batch_service.BatchOutcome:
        async with unit_of_work(db) as session:
            return await push(session, actor, items, key="race", body_hash=body_hash)


class TestFindDevices:
    async def test_found_devices_are_reused_missing_ones_looked_up_again(
        self, session: AsyncSession
    ) -> None:
        org = await make_organization(session)
        device = await make_device(session, org)
        cache: DeviceCache = TtlCache(60)
        found = await batch_service.find_devices(
            session, org.id, {device.unique_id, "later"}, cache
        )
        assert set(found) == {device.unique_id}
        device.disabled = True
        await session.flush()
        later = await make_device(session, org, unique_id="later")
        found = await batch_service.find_devices(
            session, org.id, {device.unique_id, "later"}, cache
        )
        assert found[device.unique_id].disabled is False  # reused until the cache expires
        assert found["later"].id == later.id  # not found before: looked up again
        fresh = await batch_service.find_devices(session, org.id, {device.unique_id}, TtlCache(0))
        assert fresh[device.unique_id].disabled is True

    async def test_another_organizations_device_is_never_found(self, session: AsyncSession) -> None:
        device = await make_device(session)
        cache: DeviceCache = TtlCache(60)
        assert await batch_service.find_devices(session, device.org_id, {device.unique_id}, cache)
        other = await make_organization(session)
        assert await batch_service.find_devices(session, other.id, {device.unique_id}, cache) == {}


class TestMarkQueuedAndRead:
    async def test_only_a_received_batch_becomes_queued(self, session: AsyncSession) -> None:
        org = await make_organization(session)
        outcome = await push(session, key_actor(org), [item("x")])
        assert await batch_service.mark_queued(session, outcome.batch_id)
        assert not await batch_service.mark_queued(session, outcome.batch_id)

    async def test_a_batch_of_another_organization_is_not_found(
        self, session: AsyncSession
    ) -> None:
        org = await make_organization(session)
        outcome = await push(session, key_actor(org), [item("x")])
        batch = await batch_service.get_batch(session, key_actor(org), outcome.batch_id)
        assert batch.id == outcome.batch_id
        stranger = key_actor(await make_organization(session))
        with pytest.raises(BatchNotFound):
            await batch_service.get_batch(session, stranger, outcome.batch_id)


class TestReplayBatch:
    async def test_a_device_registered_afterwards_gets_its_fixes(
        self, session: AsyncSession
    ) -> None:
        org = await make_organization(session)
        known = await make_device(session, org)
        items = [item(known.unique_id), item("late", 3), item("late", 2), item("late", 1, lat=99)]
        outcome = await push(session, key_actor(org), items)
        assert outcome.response["rejected"] == 3
        batch = await session.get(IngestBatch, outcome.batch_id)
        assert batch is not None
        batch.status = BatchStatus.PROCESSED
        late = await make_device(session, org, unique_id="late")
        operator = principal_for(await make_operator(session))

        replayed = await batch_operators.replay_batch(session, operator, batch)

        assert (replayed.accepted, replayed.rejected, replayed.duplicates) == (3, 1, 0)
        assert replayed.status == BatchStatus.RECEIVED
        assert replayed.errors == [
            {"index": 3, "code": "invalid_coordinates", "message": "lat or lon is out of range."}
        ]
        assert [r["index"] for r in replayed.rejected_items] == [3]
        assert sorted(replayed.device_ids) == sorted([str(known.id), str(late.id)])
        assert await positions_of(session, batch.id) == 3
        assert replayed.response["accepted"] == 1  # the first answer stays what it was
        audit = (
            await session.execute(
                select(AuditEntry).where(col(AuditEntry.target_id) == str(batch.id))
            )
        ).scalar_one()
        assert (audit.action, audit.actor_id) == ("ingest_batches.replay", operator.id)
        assert audit.diff == {"stored": 2, "duplicates": 0, "still_rejected": 1}

    async def test_fixes_stored_meanwhile_count_as_duplicates(self, session: AsyncSession) -> None:
        org = await make_organization(session)
        fix = item("late")
        outcome = await push(session, key_actor(org), [fix])
        await make_device(session, org, unique_id="late")
        await push(session, key_actor(org), [fix])  # the upstream sent it again meanwhile
        batch = await session.get(IngestBatch, outcome.batch_id)
        assert batch is not None
        operator = principal_for(await make_operator(session))
        replayed = await batch_operators.replay_batch(session, operator, batch)
        assert (replayed.accepted, replayed.rejected, replayed.duplicates) == (0, 0, 1)
        assert replayed.rejected_items == []
        assert replayed.rejected_items_expire_at is None

    async def test_a_batch_being_processed_is_busy(self, session: AsyncSession) -> None:
        org = await make_organization(session)
        outcome = await push(session, key_actor(org), [item("x")])
        batch = await session.get(IngestBatch, outcome.batch_id)
        assert batch is not None
        batch.status = BatchStatus.PROCESSING
        await session.flush()
        with pytest.raises(BatchBusy):
            await batch_operators.replay_batch(
                session, principal_for(await make_operator(session)), batch
            )

    async def test_a_failed_batch_is_processed_again_and_expired_items_stay(
        self, session: AsyncSession
    ) -> None:
        org = await make_organization(session)
        outcome = await push(session, key_actor(org), [item("late")])
        batch = await session.get(IngestBatch, outcome.batch_id)
        assert batch is not None
        batch.status, batch.last_error, batch.attempts = BatchStatus.FAILED, "boom", 8
        batch.rejected_items_expire_at = datetime.now(UTC) - timedelta(seconds=1)
        await session.flush()
        await make_device(session, org, unique_id="late")
        replayed = await batch_operators.replay_batch(
            session, principal_for(await make_operator(session)), batch
        )
        assert (replayed.status, replayed.last_error, replayed.accepted) == (
            BatchStatus.RECEIVED, None, 0,
        )  # fmt: skip
        assert replayed.rejected == 1
