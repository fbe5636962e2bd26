"""An organization's export holds a few rows at a time, whatever their size: a batch keeps up
to 10,000 rejected items (its errors and its answer list them again), so 2,000 batch rows
read at once, or 500 serialized before a chunk is sent, could be gigabytes."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from milepost_common.db import Database, unit_of_work
from milepost_common.domain.organizations import export as org_export
from milepost_common.domain.organizations.schemas import ExportKind
from milepost_common.testing.factories import make_batch, make_organization

BATCHES, REJECTED = 240, 400
Lines = Callable[[AsyncIterator[tuple[ExportKind, dict[str, Any]]]], AsyncIterator[bytes]]


def as_csv(rows: AsyncIterator[tuple[ExportKind, dict[str, Any]]]) -> AsyncIterator[bytes]:
    return org_export.csv_lines(ExportKind.INGEST_BATCHES, rows)


def rejected_items(batch: int) -> list[dict[str, object]]:
    item = {"fix_time": "2026-01-01T00:00:00Z", "lat": 52.5, "lon": 13.4, "note": "x" * 40}
    return [
        {"index": i, "code": "unknown_device", "item": {**item, "device_id": f"u-{batch}-{i}"}}
        for i in range(REJECTED)
    ]


class TestExportRows:
    @pytest.mark.parametrize("lines", [org_export.ndjson_lines, as_csv], ids=["ndjson", "csv"])
    async def test_large_batches_are_exported_a_few_at_a_time(
        self, committed_db: Database, lines: Lines
    ) -> None:
        async with unit_of_work(committed_db) as session:
            org = await make_organization(session)
            start = datetime.now(UTC) - timedelta(days=1)
            for n in range(BATCHES):
                await make_batch(
                    session, org.id, start + timedelta(seconds=n), rejected_items=rejected_items(n)
                )

        tracemalloc.start()
        try:
            sent = largest = 0
            async with committed_db.sessionmaker() as session:
                rows = org_export.export_rows(session, org.id, [ExportKind.INGEST_BATCHES])
                async for chunk in lines(rows):
                    sent, largest = sent + len(chunk), max(largest, len(chunk))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

        assert sent > 20_000_000, sent
        # A handful of batches held at once, not the whole export.
        assert largest < sent / 10, (largest, sent)
        assert peak < sent / 2, (peak, sent)
