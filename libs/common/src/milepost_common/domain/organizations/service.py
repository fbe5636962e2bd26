"""Organizations: onboarding, settings, suspension, hard deletion.

Suspension is enforced by the principal resolver on every request (cached a few seconds
at most): the organization's users, API tokens and API keys stop working, and its refresh
tokens are revoked so nothing comes back on reactivation.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain import paging
from milepost_common.domain.audit import service as audit
from milepost_common.domain.devices import tenure as device_tenure
from milepost_common.domain.organizations.errors import (
    DeletionNotConfirmed,
    DevicesHoldOtherHistory,
    OrganizationNotFound,
    OrganizationNotSuspended,
)
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.organizations.repository import OrganizationRepository
from milepost_common.domain.organizations.schemas import (
    NULLABLE_SETTINGS,
    OrganizationCreate,
    OrganizationFilters,
    OrganizationUpdate,
)
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
    org = await OrganizationRepository(session).get(org_id, for_update=for_update)
    if org is None:
        raise OrganizationNotFound()
    return org


async def find_organizations(
    session: AsyncSession, org_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, Organization]:
    """The organizations of ``org_ids`` that exist, by id."""
    return {org.id: org for org in await OrganizationRepository(session).get_many(org_ids)}


@dataclass(frozen=True, slots=True)
class Retention:
    """How long an organization keeps its data, and how far it has been deleted already."""

    org_id: uuid.UUID
    days: int
    applied_until: datetime | None


async def list_retentions(session: AsyncSession) -> list[Retention]:
    """Every organization's retention (the retention job: no principal)."""
    return [Retention(*row) for row in await OrganizationRepository(session).retentions()]


async def record_retention_applied(
    session: AsyncSession, retention: Retention, until: datetime
) -> None:
    """Move the watermark to ``until`` (nothing of the organization before it is left),
    unless its retention changed since ``retention`` was read (a change clears it)."""
    await OrganizationRepository(session).set_retention_applied(
        retention.org_id, until, retention.days, retention.applied_until
    )


async def suggest_names(session: AsyncSession, part: str, *, limit: int = 10) -> list[str]:
    """Up to ``limit`` organization names containing ``part``, those starting with it first."""
    part = part.strip()
    if not part:
        return []
    return await OrganizationRepository(session).names_like(part, limit=limit)


async def list_organizations(
    session: AsyncSession, filters: OrganizationFilters
) -> paging.PageResult[Organization]:
    """A keyset page by the filters' sort; ``q`` matches part of the name, case-insensitively."""
    return await OrganizationRepository(session).page(filters)


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
    orgs = OrganizationRepository(session)
    ids = await orgs.device_ids(org_id)
    ids |= await orgs.audited_targets(device_tenure.TRANSFER_ACTION, org_id)
    return sorted(ids)


async def _devices_with_history_elsewhere(
    session: AsyncSession, org_id: uuid.UUID
) -> list[uuid.UUID]:
    """Its devices that came from another organization and still have that one's data."""
    orgs = OrganizationRepository(session)
    arrived = await orgs.audited_targets(device_tenure.TRANSFER_ACTION, org_id, of_org=False)
    candidates = sorted(arrived & await orgs.device_ids(org_id))
    return await orgs.devices_with_history_elsewhere(org_id, candidates)


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
    orgs = OrganizationRepository(session)
    # Positions carry no foreign key (partitioned): deleted here, the rest cascades.
    removed = await orgs.delete_positions(org.id, await _devices_ever_in(session, org.id))
    counts = {"devices": await orgs.count_devices(org.id), "positions": removed}
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
