"""Organizations: onboarding, settings, suspension, hard deletion.

Suspension is enforced by the principal resolver on every request (cached a few seconds
at most): the organization's users, API tokens and API keys stop working, and its refresh
tokens are revoked so nothing comes back on reactivation.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain import paging
from milepost_common.domain.audit import service as audit
from milepost_common.domain.audit.models import AuditEntry
from milepost_common.domain.base import get_by_id
from milepost_common.domain.devices import admin_service as device_admin
from milepost_common.domain.devices.models import Device
from milepost_common.domain.organizations import repository as org_repository
from milepost_common.domain.organizations.errors import (
    DeletionNotConfirmed,
    DevicesHoldOtherHistory,
    OrganizationNotFound,
    OrganizationNotSuspended,
)
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.organizations.schemas import (
    NULLABLE_SETTINGS,
    OrganizationCreate,
    OrganizationFilters,
    OrganizationUpdate,
)
from milepost_common.domain.positions.models import Position
from milepost_common.domain.principals import Principal
from milepost_common.domain.sessions import service as sessions


def _settings_of(org: Organization) -> dict[str, Any]:
    return org.model_dump(
        mode="json",
        exclude={"id", "created_at", "updated_at", "suspended_at", "retention_applied_until"},
    )


async def create_organization(
    session: AsyncSession, actor: Principal, data: OrganizationCreate
) -> Organization:
    """A new active organization with the given settings (defaults elsewhere). Audited."""
    org = Organization(**data.model_dump(exclude_unset=True))
    session.add(org)
    await session.flush()
    await audit.record(
        session,
        actor,
        "organizations.create",
        target_type="organization",
        target_id=org.id,
        org_id=org.id,
        diff=data.model_dump(mode="json", exclude_unset=True),
    )
    return org


async def get_organization(
    session: AsyncSession, org_id: uuid.UUID, *, for_update: bool = False
) -> Organization:
    """Raises OrganizationNotFound."""
    return await get_by_id(
        session, Organization, org_id, OrganizationNotFound, for_update=for_update
    )


async def suggest_names(session: AsyncSession, part: str, *, limit: int = 10) -> list[str]:
    """Up to ``limit`` organization names containing ``part``, those starting with it first."""
    part = part.strip()
    if not part:
        return []
    return list((await session.scalars(org_repository.named_like(part, limit=limit))).all())


async def list_organizations(
    session: AsyncSession, filters: OrganizationFilters
) -> paging.PageResult[Organization]:
    """A keyset page by the filters' sort; ``q`` matches part of the name, case-insensitively."""
    query = select(Organization)
    if filters.q:
        query = query.where(col(Organization.name).icontains(filters.q, autoescape=True))
    if filters.suspended is not None:
        suspended_at = col(Organization.suspended_at)
        query = query.where(
            suspended_at.is_not(None) if filters.suspended else suspended_at.is_(None)
        )
    return await paging.sorted_page(
        session, query, Organization, filters.sort, limit=filters.limit, cursor=filters.cursor
    )


async def update_organization(
    session: AsyncSession, actor: Principal, org: Organization, data: OrganizationUpdate
) -> Organization:
    """Apply the given settings; nulls clear only the optional ones. Audited with the diff."""
    before = _settings_of(org)
    for name, value in data.model_dump(exclude_unset=True).items():
        if value is None and name not in NULLABLE_SETTINGS:
            continue
        setattr(org, name, value)
    diff = audit.changes(before, _settings_of(org))
    if "retention_days" in diff:
        # A longer retention lets ingest store older fixes than the job has deleted up to.
        org.retention_applied_until = None
    if diff:
        org.updated_at = datetime.now(UTC)
        session.add(org)
        await session.flush()
        await audit.record(
            session,
            actor,
            "organizations.update",
            target_type="organization",
            target_id=org.id,
            org_id=org.id,
            diff=diff,
        )
    return org


async def suspend_organization(
    session: AsyncSession, actor: Principal, org: Organization
) -> Organization:
    """Idempotent. Its users, tokens and keys are refused from the next request on; every
    refresh token of its users is revoked. Audited once."""
    if org.suspended_at is not None:
        return org
    org.suspended_at = org.updated_at = datetime.now(UTC)
    session.add(org)
    await session.flush()
    await sessions.revoke_org_sessions(session, org.id)
    await audit.record(
        session,
        actor,
        "organizations.suspend",
        target_type="organization",
        target_id=org.id,
        org_id=org.id,
        diff={"suspended": [False, True]},
    )
    return org


async def reactivate_organization(
    session: AsyncSession, actor: Principal, org: Organization
) -> Organization:
    """Idempotent: lifts a suspension (revoked refresh tokens stay revoked). Audited once."""
    if org.suspended_at is None:
        return org
    org.suspended_at = None
    org.updated_at = datetime.now(UTC)
    session.add(org)
    await session.flush()
    await audit.record(
        session,
        actor,
        "organizations.reactivate",
        target_type="organization",
        target_id=org.id,
        org_id=org.id,
        diff={"suspended": [True, False]},
    )
    return org


async def _devices_ever_in(session: AsyncSession, org_id: uuid.UUID) -> list[uuid.UUID]:
    """Its devices now, and those transferred away (found in the append-only audit log)."""
    current = select(col(Device.id)).where(Device.org_id == org_id)
    moved = select(col(AuditEntry.target_id)).where(
        AuditEntry.action == device_admin.TRANSFER_ACTION, AuditEntry.org_id == org_id
    )
    ids = set((await session.scalars(current)).all())
    ids.update(uuid.UUID(raw) for raw in (await session.scalars(moved)).all() if raw)
    return sorted(ids)


# Rows of another organization that refer to a device (deleting the device would cascade
# into them, or orphan the positions, which carry no foreign key).
_HISTORY_ELSEWHERE = text(
    """
    SELECT d FROM unnest(CAST(:ids AS uuid[])) AS d
    WHERE EXISTS (SELECT 1 FROM positions WHERE device_id = d AND org_id <> :org)
       OR EXISTS (SELECT 1 FROM trips WHERE device_id = d AND org_id <> :org)
       OR EXISTS (SELECT 1 FROM stops WHERE device_id = d AND org_id <> :org)
       OR EXISTS (SELECT 1 FROM alerts WHERE device_id = d AND org_id <> :org)
    ORDER BY d
    """
)


async def _devices_with_history_elsewhere(
    session: AsyncSession, org_id: uuid.UUID
) -> list[uuid.UUID]:
    """Its devices that came from another organization and still have that one's data."""
    transferred = select(col(AuditEntry.target_id)).where(
        AuditEntry.action == device_admin.TRANSFER_ACTION, AuditEntry.org_id != org_id
    )
    arrived = {uuid.UUID(raw) for raw in (await session.scalars(transferred)).all() if raw}
    current = set(
        (await session.scalars(select(col(Device.id)).where(Device.org_id == org_id))).all()
    )
    candidates = sorted(arrived & current)
    if not candidates:
        return []
    rows = await session.execute(_HISTORY_ELSEWHERE, {"ids": candidates, "org": org_id})
    return [row[0] for row in rows]


async def delete_organization(
    session: AsyncSession, actor: Principal, org: Organization, confirm: str
) -> None:
    """Hard delete of a suspended organization and all its data (positions included).

    Raises OrganizationNotSuspended (409) unless suspended, DeletionNotConfirmed (400)
    unless ``confirm`` is its exact name, and DevicesHoldOtherHistory (409, the devices in
    ``details``) while a device transferred in still carries another organization's data.
    The audit log keeps the record of it.
    """
    if org.suspended_at is None:
        raise OrganizationNotSuspended()
    if confirm != org.name:
        raise DeletionNotConfirmed()
    shared = await _devices_with_history_elsewhere(session, org.id)
    if shared:
        raise DevicesHoldOtherHistory(
            details=[
                {
                    "loc": ["devices", str(device_id)],
                    "msg": "Holds another organization's history.",
                    "type": "conflict",
                }
                for device_id in shared
            ]
        )
    device_ids = await _devices_ever_in(session, org.id)
    # Positions carry no foreign key (partitioned): delete them through the primary key's
    # device column so every partition uses its index.
    removed = 0
    for start in range(0, len(device_ids), 500):
        result = await session.execute(
            delete(Position).where(
                col(Position.device_id).in_(device_ids[start : start + 500]),
                col(Position.org_id) == org.id,
            )
        )
        removed += int(getattr(result, "rowcount", 0) or 0)
    counts = {
        "devices": await session.scalar(
            select(func.count()).select_from(Device).where(Device.org_id == org.id)
        ),
        "positions": removed,
    }
    await audit.record(
        session,
        actor,
        "organizations.delete",
        target_type="organization",
        target_id=org.id,
        org_id=org.id,
        diff={"name": org.name, "deleted": counts},
    )
    # Everything else refers to the organization with ON DELETE CASCADE.
    await session.delete(org)
    await session.flush()
