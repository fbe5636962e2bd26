"""``record``: one audit entry in the caller's transaction (append-only in the database)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from milepost_common.domain import paging
from milepost_common.domain.audit.models import AuditEntry
from milepost_common.domain.audit.schemas import AuditFilters, AuditSort
from milepost_common.domain.organizations import repository as org_repository
from milepost_common.domain.principals import Principal

# Field names whose values never reach the audit log, whatever the caller passes.
SECRET_FIELDS = frozenset(
    {
        "password",
        "password_hash",
        "key",
        "key_hash",
        "secret",
        "secret_encrypted",
        "token",
        "token_hash",
        "refresh_token",
        "access_token",
    }
)


def redact(diff: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in diff.items():
        if name in SECRET_FIELDS:
            out[name] = "[redacted]"
        elif isinstance(value, dict):
            out[name] = redact(value)
        else:
            out[name] = value
    return out


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """``{field: [old, new]}`` for the fields that changed."""
    return {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}


async def record(
    session: AsyncSession,
    actor: Principal,
    action: str,
    *,
    target_type: str | None = None,
    target_id: uuid.UUID | str | None = None,
    org_id: uuid.UUID | None = None,
    diff: dict[str, Any] | None = None,
) -> AuditEntry:
    """Write one entry with the actor, client IP and request id; secrets are redacted."""
    entry = AuditEntry(
        actor_id=actor.id,
        actor_type=actor.kind.value,
        actor_label=actor.label,
        org_id=org_id if org_id is not None else actor.org_id,
        action=action,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        diff=redact(diff or {}),
        ip=actor.ip,
        request_id=actor.request_id,
    )
    session.add(entry)
    await session.flush()
    return entry


async def list_audit_entries(
    session: AsyncSession, filters: AuditFilters
) -> paging.PageResult[AuditEntry]:
    """A keyset page by ``occurred_at``; an ``action`` ending in a dot matches a feature."""
    query = select(AuditEntry)
    if filters.actor_id is not None:
        query = query.where(AuditEntry.actor_id == filters.actor_id)
    if filters.actor:
        query = query.where(col(AuditEntry.actor_label).icontains(filters.actor, autoescape=True))
    if filters.org_id is not None:
        query = query.where(AuditEntry.org_id == filters.org_id)
    if filters.org_name:
        query = query.where(col(AuditEntry.org_id).in_(org_repository.ids_named(filters.org_name)))
    if filters.action:
        if filters.action.endswith("."):
            query = query.where(col(AuditEntry.action).startswith(filters.action, autoescape=True))
        else:
            query = query.where(AuditEntry.action == filters.action)
    if filters.target_type:
        query = query.where(AuditEntry.target_type == filters.target_type)
    if filters.target_id:
        query = query.where(AuditEntry.target_id == filters.target_id)
    query = paging.time_window(
        query, col(AuditEntry.occurred_at), paging.Window(filters.from_, filters.to)
    )
    paged = paging.keyset(
        query,
        col(AuditEntry.occurred_at),
        col(AuditEntry.id),
        limit=filters.limit,
        cursor=filters.cursor,
        descending=filters.sort is AuditSort.OCCURRED_AT_DESC,
    )
    rows = (await session.scalars(paged)).all()
    return paging.page_of(rows, filters.limit, lambda e: (e.occurred_at, e.id))
