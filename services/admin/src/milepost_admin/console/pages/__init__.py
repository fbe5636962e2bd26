"""The console's pages, one module per section as the JSON API's routes are split."""

from __future__ import annotations

from fastapi import APIRouter

from milepost_admin.console.pages import (
    api_keys,
    audit_log,
    dashboard,
    devices,
    ingest_batches,
    maps,
    operators,
    organizations,
    secrets,
    suggestions,
    users,
    webhook_deliveries,
)

router = APIRouter(tags=["console"], include_in_schema=False)
for section in (
    dashboard,
    organizations,
    maps,
    users,
    devices,
    api_keys,
    ingest_batches,
    webhook_deliveries,
    audit_log,
    operators,
    secrets,
    suggestions,
):
    router.include_router(section.router)
