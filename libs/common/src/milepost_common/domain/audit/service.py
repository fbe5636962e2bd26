"""``record``: one audit entry in the caller's transaction (append-only in the database)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain import paging
from milepost_common.domain.audit.models import LABEL_MAX, AuditEntry
from milepost_common.domain.audit.repository import AuditRepository
from milepost_common.domain.audit.schemas import AuditFilters
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


def _fitted(label: str | None) -> str | None:
    """A label as long as the column holds (a failed login's username may be any length)."""
    if label is None or len(label) <= LABEL_MAX:
        return label
    return label[: LABEL_MAX - 1] + "…"


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
        actor_label=_fitted(actor.label),
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
    return await AuditRepository(session).page(filters)
