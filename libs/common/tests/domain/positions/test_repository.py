"""The plans of the statements on ``positions`` that must not read every partition."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.positions import repository


def scanned(node: dict[str, Any]) -> set[str]:
    """The partitions a plan reads or modifies (the parent, ``positions``, left out)."""
    names = {node["Relation Name"]} if "Relation Name" in node else set()
    names |= {target["Relation Name"] for target in node.get("Target Tables", [])}
    for child in node.get("Plans", []):
        names |= scanned(child)
    return names - {"positions"}


class TestDeleteExpired:
    async def test_only_the_partitions_in_range_are_read(self, session: AsyncSession) -> None:
        # The subquery's range alone pruned only the subquery: the DELETE itself scanned
        # every partition (3.5M rows read to delete 1,176 in production's 368 partitions).
        today = datetime.now(UTC).date()
        days = [today - timedelta(days=n) for n in (10, 9, 8)]
        since = datetime.combine(days[0], datetime.min.time(), tzinfo=UTC)
        cutoff = since + timedelta(days=2, hours=12)
        params = {"org": uuid.uuid4(), "since": since, "cutoff": cutoff, "n": 100}

        raw = await session.scalar(
            text(f"EXPLAIN (FORMAT JSON) {repository._DELETE_EXPIRED.text}"), params
        )

        plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
        assert scanned(plan) == {f"positions_p{day:%Y%m%d}" for day in days}
