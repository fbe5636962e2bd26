"""The history read's hot path answers exactly what the datetime mapping answered before
it: times sent by Postgres as text come out as orjson writes a datetime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_api import geojson
from milepost_common.pagination import encode_cursor
from milepost_common.testing.factories import make_device, make_position
from services.api.tests.api_support import Bearer, Team

BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)

# Whole seconds often (most fixes), any microsecond otherwise.
microseconds = st.one_of(st.just(0), st.integers(0, 999_999))
fix_times = st.lists(
    st.builds(
        lambda s, us: BASE + timedelta(seconds=s, microseconds=us),
        st.integers(0, 3 * 3600),
        microseconds,
    ),
    min_size=2,
    max_size=6,
    unique=True,
)


def written(moment: datetime) -> str:
    return orjson.dumps(moment, option=orjson.OPT_UTC_Z).decode()[1:-1]


@given(st.datetimes(timezones=st.just(UTC)))
def test_a_time_reads_as_orjson_writes_it(moment: datetime) -> None:
    """The latest positions' times (asyncpg's, in UTC) through the history rows' mapping."""
    assert geojson.answer_time(geojson.json_time(moment)) == written(moment)


class TestTimesFromPostgres:
    @settings(
        max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
    )
    @given(fix_times)
    async def test_items_and_cursor_as_from_datetimes(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        team: Team,
        bearer: Bearer,
        times: list[datetime],
    ) -> None:
        device = await make_device(session, team.org)
        for moment in times:
            await make_position(session, device, moment)
        page = (
            await client.get(
                f"/api/v1/vehicles/{device.id}/positions",
                params={"limit": len(times) - 1},
                headers=bearer(team.viewer),
            )
        ).json()
        ordered = sorted(times)
        assert [item["fix_time"] for item in page["items"]] == [written(t) for t in ordered[:-1]]
        assert page["next_cursor"] == encode_cursor(ordered[-2], device.id)
