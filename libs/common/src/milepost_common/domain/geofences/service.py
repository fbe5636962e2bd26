"""Geofences of an organization: circles (Point + radius) and polygons, as GeoJSON."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain import paging
from milepost_common.domain.audit import service as audit
from milepost_common.domain.base import lock_org_for_limit
from milepost_common.domain.geofences.errors import (
    GeofenceInUse,
    GeofenceNotFound,
    GeofenceVerticesLimitReached,
)
from milepost_common.domain.geofences.models import Geofence
from milepost_common.domain.geofences.repository import GeofenceRepository
from milepost_common.domain.geofences.schemas import (
    GeofenceCreate,
    GeofenceUpdate,
    PointGeometry,
    PolygonGeometry,
)
from milepost_common.domain.principals import Principal


async def _check_vertices(
    session: AsyncSession,
    org_id: uuid.UUID,
    geometry: PointGeometry | PolygonGeometry,
    limit: int,
    besides: uuid.UUID | None = None,
) -> None:
    """Raises GeofenceVerticesLimitReached when ``geometry`` (in place of the geofence
    ``besides``) would take the organization's geofences over ``limit`` vertices. Every fix
    of a vehicle a geofence rule covers is measured against its fence in the workers the
    tenants share, which also read every watched fence for each batch."""
    await lock_org_for_limit(session, org_id)
    total = geometry.vertices + await GeofenceRepository(session).vertices_for_org(
        org_id, besides=besides
    )
    if total > limit:
        raise GeofenceVerticesLimitReached.over(limit, total)


async def create_geofence(
    session: AsyncSession, actor: Principal, data: GeofenceCreate, *, max_vertices: int
) -> Geofence:
    """Create a geofence in the actor's organization (the shape is validated). Raises
    GeofenceVerticesLimitReached past ``max_vertices`` in all. Audited."""
    await _check_vertices(session, actor.require_org(), data.geometry, max_vertices)
    geofence = Geofence(
        org_id=actor.require_org(),
        name=data.name,
        geometry=data.geometry.model_dump(mode="json"),
        radius_m=data.radius_m,
    )
    session.add(geofence)
    await session.flush()
    await audit.record(
        session,
        actor,
        "geofences.create",
        target_type="geofence",
        target_id=geofence.id,
        diff={"name": data.name, "type": data.geometry.type, "radius_m": data.radius_m},
    )
    return geofence


async def get_geofence(
    session: AsyncSession,
    actor: Principal,
    geofence_id: uuid.UUID,
    *,
    for_update: bool = False,
    for_share: bool = False,
) -> Geofence:
    """Raises GeofenceNotFound when missing or of another organization; locked when asked
    (``for_share``: a rule that names it holds it until the rule is stored)."""
    geofence = await GeofenceRepository(session).get_for_org(
        actor.require_org(), geofence_id, for_update=for_update, for_share=for_share
    )
    if geofence is None:
        raise GeofenceNotFound()
    return geofence


async def list_geofences(
    session: AsyncSession, actor: Principal, page: paging.PageRequest
) -> paging.PageResult[Geofence]:
    """A keyset page by ``created_at`` (or ``name``)."""
    return await GeofenceRepository(session).page_for_org(actor.require_org(), page)


async def update_geofence(
    session: AsyncSession,
    actor: Principal,
    geofence_id: uuid.UUID,
    data: GeofenceUpdate,
    *,
    max_vertices: int,
) -> Geofence:
    """Change the fields sent. Raises GeofenceNotFound, or GeofenceVerticesLimitReached
    when a new geometry would take the organization past ``max_vertices`` in all. Audited."""
    geofence = await get_geofence(session, actor, geofence_id)
    if data.geometry is not None:
        await _check_vertices(
            session, geofence.org_id, data.geometry, max_vertices, besides=geofence.id
        )
    sent = data.model_dump(mode="json", exclude_unset=True)
    changes: dict[str, Any] = {}
    if sent.get("name") is not None:
        changes["name"] = sent["name"]
    if data.geometry is not None:
        changes["geometry"] = data.geometry.model_dump(mode="json")
        changes["radius_m"] = data.radius_m
    diff = audit.changes({k: getattr(geofence, k) for k in changes}, changes)
    if diff:
        for name, value in changes.items():
            setattr(geofence, name, value)
        geofence.updated_at = datetime.now(UTC)
        session.add(geofence)
        await session.flush()
        await audit.record(
            session,
            actor,
            "geofences.update",
            target_type="geofence",
            target_id=geofence.id,
            diff={k: v for k, v in diff.items() if k != "geometry"}
            | ({"geometry": "changed"} if "geometry" in diff else {}),
        )
    return geofence


async def delete_geofence(session: AsyncSession, actor: Principal, geofence_id: uuid.UUID) -> None:
    """Raises GeofenceNotFound, or GeofenceInUse while an alert rule refers to it. Audited.
    The rules are counted with the geofence locked: a rule being stored that names it holds
    it (``for_share``) until it is, so the count sees it."""
    geofence = await get_geofence(session, actor, geofence_id, for_update=True)
    if await GeofenceRepository(session).count_rules_using(geofence):
        raise GeofenceInUse()
    await session.delete(geofence)
    await session.flush()
    await audit.record(
        session,
        actor,
        "geofences.delete",
        target_type="geofence",
        target_id=geofence_id,
        diff={"name": geofence.name},
    )
