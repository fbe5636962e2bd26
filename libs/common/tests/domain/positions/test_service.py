"""The storable window of ``positions`` and the conflict-skipping insert."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.cache import TtlCache
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.positions import service as position_service
from milepost_common.domain.positions.models import Position
from milepost_common.domain.positions.service import NewPositions, StorableWindow
from milepost_common.testing.factories import make_device
from milepost_common.testing.plugin import TEST_PARTITION_DAYS_BACK

DAY = timedelta(days=1)
T0 = datetime(2026, 1, 10, tzinfo=UTC)


class TestContiguousWindow:
    def test_the_run_around_now(self) -> None:
        bounds = [(T0 + i * DAY, T0 + (i + 1) * DAY) for i in range(5)]
        window = position_service.contiguous_window(bounds, T0 + 2 * DAY)
        assert window == StorableWindow(T0, T0 + 5 * DAY)

    def test_a_gap_ends_the_window(self) -> None:
        bounds = [(T0, T0 + DAY), (T0 + 2 * DAY, T0 + 3 * DAY), (T0 + 3 * DAY, T0 + 4 * DAY)]
        window = position_service.contiguous_window(bounds, T0 + 2 * DAY + timedelta(hours=1))
        assert window == StorableWindow(T0 + 2 * DAY, T0 + 4 * DAY)

    def test_no_partition_is_no_window(self) -> None:
        assert position_service.contiguous_window([], T0) is None


class TestStorableWindow:
    async def test_window_of_the_test_database(self, session: AsyncSession) -> None:
        now = datetime.now(UTC)
        window = await position_service.load_storable_window(session, now)
        assert window is not None
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        assert window.start == today - TEST_PARTITION_DAYS_BACK * DAY
        assert window.end == today + 3 * DAY

    async def test_cache_reads_once_until_invalidated(self, session: AsyncSession) -> None:
        cache: TtlCache[str, StorableWindow] = TtlCache(3600)
        now = datetime.now(UTC)
        first = await position_service.storable_window(session, now, cache)
        assert await position_service.storable_window(session, now, cache) is first
        cache.clear()
        assert await position_service.storable_window(session, now, cache) == first


class TestStorePositions:
    async def test_repeats_are_skipped_and_counted(self, session: AsyncSession) -> None:
        device = await make_device(session)
        moment = datetime.now(UTC) - timedelta(hours=1)
        attributes = orjson.Fragment(b'{"ignition": true}')
        rows = NewPositions(
            [
                (device.id, moment, 1.0, 1.0, None, None, None, None, attributes),
                (device.id, moment, 2.0, 2.0, 5.0, None, None, None, attributes),
                (
                    device.id,
                    moment + timedelta(seconds=1),
                    3.0,
                    3.0,
                    None,
                    90.0,
                    4.0,
                    5.0,
                    attributes,
                ),
            ]
        )
        batch_id = uuid.uuid4()
        first = await position_service.store_positions(session, device.org_id, batch_id, rows)
        assert (first.count, first.device_ids) == (2, [device.id])
        again = await position_service.store_positions(session, device.org_id, batch_id, rows)
        assert (again.count, again.device_ids) == (0, [])
        stored = (
            (
                await session.execute(
                    select(Position)
                    .where(col(Position.device_id) == device.id)
                    .order_by(col(Position.fix_time))
                )
            )
            .scalars()
            .all()
        )
        assert [
            (p.lat, p.speed, p.course, p.altitude, p.accuracy, p.attributes) for p in stored
        ] == [
            (1.0, None, None, None, None, {"ignition": True}),
            (3.0, None, 90.0, 4.0, 5.0, {"ignition": True}),
        ]
        assert stored[0].fix_time == moment
        assert {p.batch_id for p in stored} == {batch_id}

    async def test_rows_the_device_does_not_take_are_reported_dropped(
        self, session: AsyncSession
    ) -> None:
        # What a stale device cache hands in: a device of another organization (or none),
        # a disabled one, a fix before the tenure. None is stored, none is a duplicate.
        mine, foreign = await make_device(session), await make_device(session)
        org = await session.get(Organization, mine.org_id)
        disabled = await make_device(session, org, disabled=True)
        moment = datetime.now(UTC) - timedelta(minutes=5)
        mine.assigned_at = moment
        session.add(mine)
        await session.flush()
        empty = orjson.Fragment(b"{}")
        rows = NewPositions(
            [
                (device_id, at, 1.0, 1.0, None, None, None, None, empty)
                for device_id, at in [
                    (mine.id, moment),
                    (foreign.id, moment),
                    (uuid.uuid4(), moment),
                    (disabled.id, moment),
                    (mine.id, moment - timedelta(seconds=1)),
                ]
            ]
        )
        result = await position_service.store_positions(session, mine.org_id, uuid.uuid4(), rows)
        assert result.count == 1
        assert result.dropped == [
            position_service.DroppedFix(2, gone=True, disabled=False, assigned_at=None),
            position_service.DroppedFix(3, gone=True, disabled=False, assigned_at=None),
            position_service.DroppedFix(4, gone=False, disabled=True, assigned_at=None),
            position_service.DroppedFix(5, gone=False, disabled=False, assigned_at=moment),
        ]

    async def test_nothing_to_store_is_no_statement(self, session: AsyncSession) -> None:
        result = await position_service.store_positions(
            session, uuid.uuid4(), uuid.uuid4(), NewPositions()
        )
        assert result.count == 0
