"""Streaming an organization's export (JSON API and console)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

from milepost_common.db import Database
from milepost_common.domain.organizations import export as org_export
from milepost_common.domain.organizations.schemas import ExportFormat, ExportKind


async def stream_export(
    db: Database, org_id: uuid.UUID, fmt: ExportFormat, kinds: Sequence[ExportKind]
) -> AsyncIterator[bytes]:
    """The export's bytes, read with its own session: the request's transaction (with the
    audit entry) has committed before the first byte is sent."""
    async with db.sessionmaker() as session:
        rows = org_export.export_rows(session, org_id, kinds)
        lines = (
            org_export.ndjson_lines(rows)
            if fmt is ExportFormat.NDJSON
            else org_export.csv_lines(kinds[0], rows)
        )
        async for chunk in lines:
            yield chunk
