"""The summary's default range (DECISIONS: the last 7 whole days in the organization's time
zone) when a clock change falls in it, checked against zoneinfo directly: it runs from the
first instant of the day 7 days before today (local) to the first instant of today."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from milepost_common.domain.reports.service import resolve_range


def first_instant(day: date, zone: ZoneInfo) -> datetime:
    """Walk UTC in quarter hours to the first one whose wall-clock date is ``day``."""
    probe = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(hours=15)
    while probe.astimezone(zone).date() < day:
        probe += timedelta(minutes=15)
    return probe


@pytest.mark.parametrize(
    ("zone_name", "now", "hours"),
    [
        ("Europe/Berlin", "2026-03-29T22:30:00Z", 167),  # 00:30 on the 30th there
        ("Europe/Berlin", "2026-10-25T22:59:59Z", 168),  # still the 25th there
        ("Europe/Berlin", "2026-10-25T23:00:00Z", 169),
        ("America/New_York", "2026-03-09T03:59:00Z", 168),  # 23:59 on the 8th there
        ("America/New_York", "2026-11-02T05:00:00Z", 169),
        ("Australia/Lord_Howe", "2026-10-04T13:00:00Z", 167.5),
        ("Australia/Lord_Howe", "2026-04-05T13:30:00Z", 168.5),
        ("America/Santiago", "2026-09-07T03:00:00Z", 167),  # its 6th began at 01:00
    ],
)
def test_the_last_seven_whole_days_across_a_clock_change(
    zone_name: str, now: str, hours: float
) -> None:
    zone = ZoneInfo(zone_name)
    moment = datetime.fromisoformat(now)
    today = moment.astimezone(zone).date()

    start, end = resolve_range(None, None, zone, now=moment)

    assert start == first_instant(today - timedelta(days=7), zone)
    assert end == first_instant(today, zone)
    # Subtracted in UTC: between two times of one zone Python counts wall-clock hours.
    assert (end.astimezone(UTC) - start.astimezone(UTC)).total_seconds() == hours * 3600
