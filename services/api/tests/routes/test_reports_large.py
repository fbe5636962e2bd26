"""A report of many vehicles and days is read and written a chunk at a time. A year of a large
fleet is hundreds of thousands of rows (366,000 for 1,000 vehicles, a 91 MB answer): read all
at once and made models, they cost the api process seven times the answer's bytes and held
its event loop, every other request of the process waiting, for seconds."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.reports import service as report_service
from milepost_common.domain.reports.schemas import SummaryReport
from milepost_common.testing.factories import principal_for
from services.api.tests.api_support import Bearer, Team, vehicles_that_drove

SUMMARY = "/api/v1/reports/summary"
VEHICLES = 150
FIRST_DAY = date(2026, 1, 1)


async def fleet_that_drove(session: AsyncSession, team: Team, days: int) -> None:
    """``VEHICLES`` vehicles with a trip every day from ``FIRST_DAY``: a row each per day."""
    await vehicles_that_drove(session, team.org.id, vehicles=VEHICLES, days=days, first=FIRST_DAY)


async def peak_bytes(work: Callable[[], Awaitable[Any]]) -> tuple[Any, int]:
    """``work()``'s result and the most memory Python held for it at once."""
    tracemalloc.start()
    try:
        result = await work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def days(count: int) -> tuple[date, date]:
    return FIRST_DAY, FIRST_DAY + timedelta(days=count)


class TestSummary:
    async def test_a_long_report_costs_about_its_bytes(
        self, session: AsyncSession, team: Team
    ) -> None:
        await fleet_that_drove(session, team, days=80)
        actor = principal_for(team.viewer)

        body, peak = await peak_bytes(
            lambda: report_service.summary_json(session, actor, *days(80))
        )

        report = SummaryReport.model_validate_json(body)
        assert len(report.items) == VEHICLES * 80
        assert report.items[0].distance_m == 41234.6
        # Written in pieces, the answer is still what one serialization of it would be.
        assert body == report.model_dump_json(by_alias=True).encode()
        # The pieces and their join, and one chunk of rows: not every row as a model.
        assert peak < 3 * len(body), (peak, len(body))

    async def test_the_answer_over_http_is_the_same(
        self, client: httpx.AsyncClient, session: AsyncSession, team: Team, bearer: Bearer
    ) -> None:
        await fleet_that_drove(session, team, days=10)
        start, end = days(10)
        body = await report_service.summary_json(session, principal_for(team.viewer), start, end)

        response = await client.get(
            "/api/v1/reports/summary",
            params={"from": str(start), "to": str(end)},
            headers={**bearer(team.viewer), "Accept-Encoding": "identity"},
        )

        assert response.status_code == 200
        assert response.content == body


class TestSummaryCsv:
    async def test_its_rows_take_the_memory_of_a_chunk_however_many_they_are(
        self, session: AsyncSession, team: Team
    ) -> None:
        await fleet_that_drove(session, team, days=80)
        actor = principal_for(team.viewer)

        async def count_rows(day_count: int) -> int:
            window = await report_service.prepare_export(session, actor, *days(day_count), None)
            rows = report_service.iter_summary_rows(session, actor, window, None)
            return sum([1 async for _ in rows])

        few, few_peak = await peak_bytes(lambda: count_rows(20))
        many, many_peak = await peak_bytes(lambda: count_rows(80))

        assert (few, many) == (VEHICLES * 20, VEHICLES * 80)
        # Four times the rows, about the same memory: two chunks' (1,000 rows each, the one
        # read while the last is let go).
        assert many_peak < 1.5 * few_peak, (few_peak, many_peak)


class TestTurns:
    async def test_a_process_computes_few_summaries_at_once(
        self,
        api_app: FastAPI,
        client: httpx.AsyncClient,
        team: Team,
        bearer: Bearer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Five different reports asked at once: at most ``summary_concurrency`` are being
        written at a time (each holds its rows' memory). The report itself is a slow
        stand-in here: the test's requests share one database connection."""
        running = peak = 0

        async def slow_report(*_args: Any, **_kwargs: Any) -> bytes:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.05)
            running -= 1
            return b"{}"

        monkeypatch.setattr(report_service, "summary_json", slow_report)
        headers = bearer(team.viewer)
        answers = await asyncio.gather(
            *(
                client.get(
                    SUMMARY, params={"from": f"2026-01-0{day}", "to": "2026-01-10"}, headers=headers
                )
                for day in range(1, 6)
            )
        )

        assert [a.status_code for a in answers] == [200] * 5
        assert peak == api_app.state.settings.api.summary_concurrency == 2
