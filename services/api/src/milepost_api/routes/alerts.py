"""Alerts raised by the worker's rules, and their acknowledgement."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from milepost_api.deps import AUTHENTICATED, CurrentUser, ManagerUser, WindowDep, page_params
from milepost_api.http_cache import REVALIDATE, cache_control
from milepost_common.domain import paging
from milepost_common.domain.alerts import service as alert_service
from milepost_common.domain.alerts.errors import AlertNotFound
from milepost_common.domain.alerts.models import AlertType
from milepost_common.domain.alerts.schemas import AlertRead
from milepost_common.domain.devices.errors import DeviceNotFound
from milepost_common.errors import Forbidden, Unauthorized, ValidationFailed
from milepost_common.pagination import Page
from milepost_common.web.deps import SessionDep
from milepost_common.web.errors import error_responses

router = APIRouter(prefix="/v1/alerts", tags=["alerts"], responses=AUTHENTICATED)

AlertsPage = Annotated[
    paging.PageRequest, Depends(page_params(alert_service.SORTABLE, "occurred_at"))
]


@router.get(
    "",
    summary="List alerts",
    responses=error_responses(Unauthorized, DeviceNotFound, ValidationFailed),
)
@cache_control(REVALIDATE)
async def list_alerts(
    user: CurrentUser,
    session: SessionDep,
    window: WindowDep,
    page: AlertsPage,
    vehicle_id: Annotated[
        uuid.UUID | None, Query(description="Only this vehicle's (404 if not in your fleet).")
    ] = None,
    type: Annotated[AlertType | None, Query(description="Only alerts of this type.")] = None,
    acknowledged: Annotated[
        bool | None, Query(description="true: acknowledged only; false: open only.")
    ] = None,
) -> Page[AlertRead]:
    """Ascending by `occurred_at`; `from`/`to` half-open on `occurred_at`."""
    result = await alert_service.list_alerts(
        session, user, vehicle_id, window, page, alert_type=type, acknowledged=acknowledged
    )
    return Page(items=result.items, next_cursor=result.next_cursor)


@router.post(
    "/{alert_id}/acknowledge",
    summary="Acknowledge an alert",
    responses=error_responses(Unauthorized, Forbidden, AlertNotFound, ValidationFailed),
)
async def acknowledge_alert(
    user: ManagerUser, alert_id: uuid.UUID, session: SessionDep
) -> AlertRead:
    """Managers and owners. Records who and when; idempotent (the first acknowledgement
    stays)."""
    return await alert_service.acknowledge_alert(session, user, alert_id)
