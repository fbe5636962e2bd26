"""Microseconds since the epoch (the pure code's time) to and from aware datetimes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    return (moment - EPOCH) // _MICRO


def from_micros(t: int) -> datetime:
    return EPOCH + timedelta(microseconds=t)


def utcnow() -> datetime:
    return datetime.now(UTC)
