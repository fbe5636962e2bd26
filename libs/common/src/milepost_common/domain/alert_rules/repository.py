"""Statements on ``alert_rules`` and what checking a rule reads of its organization's
vehicles and defaults."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain import paging
from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.base import find_by_id
from milepost_common.domain.devices.models import Device
from milepost_common.domain.organizations.models import Organization


class AlertRuleRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_for_org(self, org_id: uuid.UUID, rule_id: uuid.UUID) -> AlertRule | None:
        return await find_by_id(self.session, AlertRule, rule_id, org_id=org_id)

    async def listed_vehicles_for_org(
        self, org_id: uuid.UUID, *, besides: uuid.UUID | None = None
    ) -> int:
        """Vehicles the organization's rules name in all (each rule's ``vehicle_ids``; a
        rule for all vehicles names none), the rule ``besides`` left out."""
        query = sa_select(
            func.coalesce(func.sum(func.cardinality(col(AlertRule.vehicle_ids))), 0)
        ).where(col(AlertRule.org_id) == org_id)
        if besides is not None:
            query = query.where(col(AlertRule.id) != besides)
        return int(await self.session.scalar(query) or 0)

    async def page_for_org(
        self, org_id: uuid.UUID, page: paging.PageRequest
    ) -> paging.PageResult[AlertRule]:
        return await paging.org_page(self.session, AlertRule, org_id, page)

    async def default_speed_limit(self, org_id: uuid.UUID) -> float | None:
        """The organization's default speed limit (km/h), None when it has none."""
        return await self.session.scalar(
            sa_select(col(Organization.default_speed_limit_kmh)).where(
                col(Organization.id) == org_id
            )
        )

    async def devices_without_limit(
        self, org_id: uuid.UUID, among: Collection[uuid.UUID] | None = None
    ) -> list[Device]:
        """The organization's vehicles with no speed limit of their own (of ``among`` when
        given), by name."""
        query = select(Device).where(
            col(Device.org_id) == org_id, col(Device.speed_limit_kmh).is_(None)
        )
        if among is not None:
            query = query.where(col(Device.id).in_(among))
        return list(
            (await self.session.scalars(query.order_by(col(Device.name), col(Device.id)))).all()
        )

    async def device_ids_without_limit(self, org_id: uuid.UUID) -> set[uuid.UUID]:
        return set(
            (
                await self.session.scalars(
                    sa_select(col(Device.id)).where(
                        col(Device.org_id) == org_id, col(Device.speed_limit_kmh).is_(None)
                    )
                )
            ).all()
        )

    async def held_device_ids(
        self, org_id: uuid.UUID, device_ids: Collection[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Those of ``device_ids`` the organization holds now."""
        return set(
            (
                await self.session.scalars(
                    sa_select(col(Device.id)).where(
                        col(Device.org_id) == org_id, col(Device.id).in_(device_ids)
                    )
                )
            ).all()
        )

    async def held_devices(
        self, org_id: uuid.UUID, device_ids: Collection[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Which of ``device_ids`` the organization holds."""
        held = await self.session.scalars(
            sa_select(col(Device.id)).where(
                col(Device.org_id) == org_id, col(Device.id).in_(device_ids)
            )
        )
        return set(held.all())
