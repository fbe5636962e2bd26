"""Export of all of an organization's data, streamed as NDJSON or CSV.

Rows are read in chunks with a server-side cursor (ingest batches, megabytes each, a few at
a time by keyset) and serialised as they come, sent every few hundred rows or 256 KiB, so
memory stays flat whatever the size. Secrets (password, key and token hashes, webhook secrets)
never leave the database. NDJSON lines are ``{"type": <kind>, "data": {...}}``; CSV is
one kind per file (a header, then one line per row, nested values as JSON). Positions are
the rows stored under the organization, so a device transferred in brings only what was
stored after its transfer.

Measurements are shown as in every answer (``units``: metres and km/h to 0.1, durations to
whole seconds), and rows that name a vehicle by ``device_id`` carry its ``vehicle_name``
(null for a row of an earlier tenure, ``devices.names``).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col

from milepost_common import units
from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts.models import Alert
from milepost_common.domain.api_keys.models import ApiKey
from milepost_common.domain.audit import service as audit
from milepost_common.domain.devices import names
from milepost_common.domain.devices.models import Device
from milepost_common.domain.geofences.models import Geofence
from milepost_common.domain.ingest_batches.models import IngestBatch
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.organizations.repository import OrganizationRepository
from milepost_common.domain.organizations.schemas import ExportFormat, ExportKind
from milepost_common.domain.positions.models import Position
from milepost_common.domain.principals import Principal
from milepost_common.domain.trips.models import Stop, Trip
from milepost_common.domain.users.models import User
from milepost_common.domain.webhooks.models import WebhookDelivery, WebhookEndpoint
from milepost_common.domain.webhooks.service import receiver_address
from milepost_common.spreadsheets import cell_text

CHUNK_ROWS = 2000
# An ingest batch keeps up to 10,000 rejected items (its errors and its answer list them
# again): megabytes a row, so a few rows a read.
BATCH_PAGE_ROWS = 10
# A chunk is sent once it holds this many rows or bytes, whichever comes first.
SEND_ROWS, SEND_BYTES = 500, 256 * 1024


@dataclass(frozen=True, slots=True)
class _Source:
    model: type[SQLModel]
    org_column: Any
    order_by: tuple[Any, ...]
    secret_fields: frozenset[str] = frozenset()
    # Fields shown in part (a receiver's URL without the path and query that may carry its token).
    shown_as: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    # Rows of a device's timeline: the time that places them in a tenure (and names them).
    time_field: str | None = None
    # Rows of megabytes: read this many at a time (``OrganizationRepository.page_rows``).
    page_rows: int | None = None


_SOURCES: dict[ExportKind, _Source] = {
    ExportKind.ORGANIZATION: _Source(Organization, Organization.id, (col(Organization.id),)),
    ExportKind.USERS: _Source(
        User, User.org_id, (col(User.created_at), col(User.id)), frozenset({"password_hash"})
    ),
    ExportKind.DEVICES: _Source(Device, Device.org_id, (col(Device.created_at), col(Device.id))),
    ExportKind.API_KEYS: _Source(
        ApiKey, ApiKey.org_id, (col(ApiKey.created_at), col(ApiKey.id)), frozenset({"key_hash"})
    ),
    ExportKind.GEOFENCES: _Source(
        Geofence, Geofence.org_id, (col(Geofence.created_at), col(Geofence.id))
    ),
    ExportKind.ALERT_RULES: _Source(AlertRule, AlertRule.org_id, (col(AlertRule.id),)),
    ExportKind.WEBHOOK_ENDPOINTS: _Source(
        WebhookEndpoint,
        WebhookEndpoint.org_id,
        (col(WebhookEndpoint.created_at), col(WebhookEndpoint.id)),
        frozenset({"secret_encrypted"}),
        {"url": receiver_address},
    ),
    ExportKind.INGEST_BATCHES: _Source(
        IngestBatch,
        IngestBatch.org_id,
        (col(IngestBatch.received_at), col(IngestBatch.id)),
        page_rows=BATCH_PAGE_ROWS,
    ),
    ExportKind.POSITIONS: _Source(
        Position,
        Position.org_id,
        (col(Position.device_id), col(Position.fix_time)),
        time_field="fix_time",
    ),
    ExportKind.TRIPS: _Source(
        Trip, Trip.org_id, (col(Trip.start_time), col(Trip.id)), time_field="start_time"
    ),
    ExportKind.STOPS: _Source(
        Stop, Stop.org_id, (col(Stop.start_time), col(Stop.id)), time_field="start_time"
    ),
    ExportKind.ALERTS: _Source(
        Alert, Alert.org_id, (col(Alert.occurred_at), col(Alert.id)), time_field="occurred_at"
    ),
    ExportKind.WEBHOOK_DELIVERIES: _Source(
        WebhookDelivery,
        WebhookDelivery.org_id,
        (col(WebhookDelivery.created_at), col(WebhookDelivery.id)),
    ),
}


async def record_export(
    session: AsyncSession,
    actor: Principal,
    org: Organization,
    fmt: ExportFormat,
    kinds: Sequence[ExportKind],
) -> None:
    """Audit an export (``organizations.export``) before any of it is sent."""
    await audit.record(
        session,
        actor,
        "organizations.export",
        target_type="organization",
        target_id=org.id,
        org_id=org.id,
        diff={"format": fmt.value, "kinds": [k.value for k in kinds]},
    )


def columns_of(kind: ExportKind) -> list[str]:
    """The exported field names of ``kind`` (the table's, less its secrets; ``vehicle_name``
    after ``device_id`` for a device's timeline)."""
    source = _SOURCES[kind]
    columns = []
    for name in source.model.model_fields:
        if name not in source.secret_fields:
            columns.append(name)
        if name == "device_id" and source.time_field is not None:
            columns.append("vehicle_name")
    return columns


def _rounded(data: dict[str, Any]) -> dict[str, Any]:
    """A row's measurements as answers show them (a device's speed limit, a geofence's
    radius, a rule's params, an alert's details alike); what a device or a receiver sent
    (a batch's rejected items, a delivery's payload) as it was."""
    data = units.round_fields(data)
    for nested in ("details", "params"):
        if isinstance(data.get(nested), dict):
            data[nested] = units.round_fields(data[nested])
    return data


def _shown(
    source: _Source, row: Any, data: dict[str, Any], devices: dict[uuid.UUID, Device]
) -> dict[str, Any]:
    """A timeline row with the vehicle's name after its ``device_id``."""
    name = names.name_of(
        devices.get(row.device_id), row.org_id, getattr(row, source.time_field or "")
    )
    out: dict[str, Any] = {}
    for key, value in data.items():
        out[key] = value
        if key == "device_id":
            out["vehicle_name"] = name
    return out


async def export_rows(
    session: AsyncSession, org_id: uuid.UUID, kinds: Sequence[ExportKind]
) -> AsyncIterator[tuple[ExportKind, dict[str, Any]]]:
    """Every row of the organization of the given kinds, in a stable order, without secrets."""
    orgs = OrganizationRepository(session)
    devices: dict[uuid.UUID, Device] | None = None
    for kind in kinds:
        source = _SOURCES[kind]
        if source.time_field is not None and devices is None:
            devices = {device.id: device for device in await orgs.devices(org_id)}
        rows = (
            orgs.stream_rows(
                source.model, source.org_column, org_id, source.order_by, chunk_rows=CHUNK_ROWS
            )
            if source.page_rows is None
            else orgs.page_rows(
                source.model, source.org_column, org_id, source.order_by, page_rows=source.page_rows
            )
        )
        async for row in rows:
            data = row.model_dump(mode="json", exclude=set(source.secret_fields), warnings=False)
            for name, shown in source.shown_as.items():
                data[name] = shown(data[name])
            data = _rounded(data)
            if source.time_field is not None:
                data = _shown(source, row, data, devices or {})
            yield (kind, data)


async def ndjson_lines(
    rows: AsyncIterator[tuple[ExportKind, dict[str, Any]]],
) -> AsyncIterator[bytes]:
    """``{"type": kind, "data": row}`` per line, sent in chunks of a few hundred rows (or
    ``SEND_BYTES``)."""
    buffer: list[bytes] = []
    size = 0
    async for kind, data in rows:
        buffer.append(orjson.dumps({"type": kind.value, "data": data}) + b"\n")
        size += len(buffer[-1])
        if len(buffer) >= SEND_ROWS or size >= SEND_BYTES:
            yield b"".join(buffer)
            buffer.clear()
            size = 0
    if buffer:
        yield b"".join(buffer)


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if isinstance(value, str):
        return cell_text(value)
    return "" if value is None else value


async def csv_lines(
    kind: ExportKind, rows: AsyncIterator[tuple[ExportKind, dict[str, Any]]]
) -> AsyncIterator[bytes]:
    """A header line, then one CSV line per row (nested values as JSON)."""
    columns = columns_of(kind)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    count = 0
    async for _, data in rows:
        writer.writerow([_cell(data.get(name)) for name in columns])
        count += 1
        if count >= SEND_ROWS or out.tell() >= SEND_BYTES:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
            count = 0
    yield out.getvalue().encode()
