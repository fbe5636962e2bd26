"""Streaming an organization's export (JSON API and console)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

from milepost_admin.context import AdminContext
from milepost_common.db import Database
from milepost_common.domain.organizations import export as org_export
from milepost_common.domain.organizations.schemas import ExportFormat, ExportKind
from milepost_common.web.downloads import Download, download


def export_download(
    ctx: AdminContext,
    db: Database,
    org_id: uuid.UUID,
    fmt: ExportFormat,
    kinds: Sequence[ExportKind],
) -> Download:
    """The export as an attachment, or 503 while the process streams as many downloads as
    it may (``web.downloads``: each holds a connection until its client has read it all)."""
    named = kinds[0].value if len(kinds) == 1 else "all"
    return download(
        stream_export(db, org_id, fmt, kinds),
        turns=ctx.exports,
        at_once=ctx.settings.admin.exports_at_once,
        send_timeout_s=ctx.settings.admin.export_send_timeout_s,
        media_type="application/x-ndjson" if fmt is ExportFormat.NDJSON else "text/csv",
        filename=f"milepost-{org_id}-{named}.{fmt.value}",
    )


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
