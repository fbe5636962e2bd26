"""Statements on ``geofences`` (and the alert rules that refer to one)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, text
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from milepost_common.domain import paging
from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.base import find_by_id
from milepost_common.domain.geofences.models import Geofence


class GeofenceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_for_org(
        self,
        org_id: uuid.UUID,
        geofence_id: uuid.UUID,
        *,
        for_update: bool = False,
        for_share: bool = False,
    ) -> Geofence | None:
        return await find_by_id(
            self.session,
            Geofence,
            geofence_id,
            org_id=org_id,
            for_update=for_update,
            for_share=for_share,
        )

    async def page_for_org(
        self, org_id: uuid.UUID, page: paging.PageRequest
    ) -> paging.PageResult[Geofence]:
        """A keyset page by ``created_at`` (or the page's allow-listed sort)."""
        return await paging.org_page(self.session, Geofence, org_id, page)

    async def vertices_for_org(self, org_id: uuid.UUID, *, besides: uuid.UUID | None) -> int:
        """The positions of all rings of the organization's geofences (a circle counts one),
        but for the geofence ``besides``. What is not an array where the schema puts one (a
        row written by hand) counts as one, as the worker leaves such a fence out."""
        total = await self.session.scalar(
            text(
                "SELECT coalesce(sum(CASE WHEN jsonb_typeof(geometry->'coordinates') = 'array'"
                " AND geometry->>'type' = 'Polygon' THEN (SELECT sum(CASE WHEN"
                " jsonb_typeof(r) = 'array' THEN jsonb_array_length(r) ELSE 1 END) FROM"
                " jsonb_array_elements(geometry->'coordinates') r) ELSE 1 END), 0)"
                " FROM geofences WHERE org_id = :org_id AND id IS DISTINCT FROM :besides"
            ),
            {"org_id": org_id, "besides": besides},
        )
        return int(total or 0)

    async def count_rules_using(self, geofence: Geofence) -> int:
        """How many of its organization's alert rules name this geofence in their params."""
        count = await self.session.scalar(
            sa_select(func.count())
            .select_from(AlertRule)
            .where(
                col(AlertRule.org_id) == geofence.org_id,
                col(AlertRule.params)["geofence_id"].astext == str(geofence.id),
            )
        )
        return int(count or 0)
