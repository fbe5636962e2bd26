"""The platform's status: queues, workers, ingest rate, processing lag, database."""

from __future__ import annotations

from fastapi import APIRouter

from milepost_admin.deps import AUTH_ERRORS, ContextDep, SupportUser
from milepost_common.domain.system import service as system_service
from milepost_common.domain.system.schemas import MinutePoint, SystemStatus
from milepost_common.errors import Unavailable
from milepost_common.web.deps import SessionDep
from milepost_common.web.errors import error_responses

router = APIRouter(prefix="/v1/system", tags=["system"])


@router.get(
    "/status",
    summary="System status",
    responses=error_responses(*AUTH_ERRORS, Unavailable),
)
async def get_system_status(
    _user: SupportUser, session: SessionDep, ctx: ContextDep
) -> SystemStatus:
    return await system_service.get_system_status(session, ctx.broker)


@router.get(
    "/ingest-series",
    summary="Ingest rate and processing lag per minute over the last hour",
    responses=error_responses(*AUTH_ERRORS),
)
async def ingest_series(_user: SupportUser, session: SessionDep) -> list[MinutePoint]:
    return await system_service.ingest_series(session)
