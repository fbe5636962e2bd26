"""Every table, imported in one place so metadata is complete (Alembic, tests)."""

from sqlmodel import SQLModel

from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts.models import Alert
from milepost_common.domain.api_keys.models import ApiKey
from milepost_common.domain.audit.models import AuditEntry
from milepost_common.domain.devices.models import Device, DeviceState
from milepost_common.domain.geofences.models import Geofence
from milepost_common.domain.ingest_batches.models import IngestBatch
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.positions.models import Position
from milepost_common.domain.sessions.models import OneTimeToken, RefreshToken
from milepost_common.domain.trips.models import MotionCheckpoint, Stop, Trip
from milepost_common.domain.users.models import User
from milepost_common.domain.webhooks.models import WebhookDelivery, WebhookEndpoint

metadata = SQLModel.metadata

__all__ = [
    "Alert",
    "AlertRule",
    "ApiKey",
    "AuditEntry",
    "Device",
    "DeviceState",
    "Geofence",
    "IngestBatch",
    "MotionCheckpoint",
    "OneTimeToken",
    "Organization",
    "Position",
    "RefreshToken",
    "Stop",
    "Trip",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
    "metadata",
]
