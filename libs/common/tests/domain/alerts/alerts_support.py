"""A replay's fix-derived alerts as the worker hands them to ``reconcile_alerts``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts import service as alert_service
from milepost_common.domain.alerts.models import AlertType
from milepost_common.domain.devices.models import Device


def episode(rule: AlertRule, start: datetime, end: datetime | None) -> alert_service.FixAlert:
    details: dict[str, Any] = {
        "limit_kmh": 50,
        "max_speed": 80.0,
        "end_time": end.isoformat() if end else None,
    }
    return alert_service.FixAlert(rule.id, AlertType.OVERSPEED, start, 1.0, 2.0, details)


def replay(
    device: Device,
    rule_id: uuid.UUID,
    alerts: list[alert_service.FixAlert],
    *,
    after: datetime | None = None,
    resumed: bool = False,
) -> list[alert_service.DeviceAlerts]:
    return [
        alert_service.DeviceAlerts(
            device_id=device.id,
            org_id=device.org_id,
            since=None,
            vehicle_name=device.name,
            rule_ids=[rule_id],
            after=after,
            open_keys=[],
            resumed=resumed,
            alerts=alerts,
        )
    ]
