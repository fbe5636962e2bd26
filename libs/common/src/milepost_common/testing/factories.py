"""``make_<entity>`` factories: rows written through the session, flushed, returned.

Passwords use argon2 with the cheapest parameters: the suite hashes many of them.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta
from typing import Any

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts.models import Alert, AlertType
from milepost_common.domain.api_keys import service as api_key_service
from milepost_common.domain.api_keys.models import Scope
from milepost_common.domain.devices.models import Device, DeviceState
from milepost_common.domain.ingest_batches.models import BatchSource, BatchStatus, IngestBatch
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.positions.models import Position
from milepost_common.domain.principals import SYSTEM, Principal, PrincipalKind
from milepost_common.domain.trips.models import Stop, Trip
from milepost_common.domain.users.models import OrgRole, PlatformRole, User
from milepost_common.domain.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

DEFAULT_PASSWORD = "correct horse battery staple"
_cheap_hash = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=64),))
_counter = itertools.count(1)


def _n() -> int:
    return next(_counter)


async def make_organization(session: AsyncSession, **fields: Any) -> Organization:
    org = Organization(**{"name": f"Org {_n()}", **fields})
    session.add(org)
    await session.flush()
    return org


async def make_user(
    session: AsyncSession,
    org: Organization | None = None,
    *,
    role: OrgRole = OrgRole.OWNER,
    password: str = DEFAULT_PASSWORD,
    **fields: Any,
) -> User:
    if org is None:
        org = await make_organization(session)
    user = User(
        **{
            "email": f"user{_n()}-{uuid.uuid4().hex[:6]}@example.com",
            "org_id": org.id,
            "role": role,
            "password_hash": _cheap_hash.hash(password),
            **fields,
        }
    )
    session.add(user)
    await session.flush()
    return user


async def make_operator(
    session: AsyncSession,
    *,
    role: PlatformRole = PlatformRole.SUPERADMIN,
    password: str = DEFAULT_PASSWORD,
    **fields: Any,
) -> User:
    user = User(
        **{
            "email": f"operator{_n()}-{uuid.uuid4().hex[:6]}@example.com",
            "platform_role": role,
            "password_hash": _cheap_hash.hash(password),
            **fields,
        }
    )
    session.add(user)
    await session.flush()
    return user


async def make_device(
    session: AsyncSession, org: Organization | None = None, **fields: Any
) -> Device:
    if org is None:
        org = await make_organization(session)
    n = _n()
    device = Device(
        **{
            "org_id": org.id,
            "unique_id": f"dev-{n}-{uuid.uuid4().hex[:8]}",
            "name": f"Vehicle {n}",
            **fields,
        }
    )
    session.add(device)
    await session.flush()
    return device


async def make_api_key(
    session: AsyncSession,
    org: Organization,
    *,
    scopes: list[Scope] | None = None,
    pepper: str = "",
    **fields: Any,
) -> api_key_service.IssuedKey:
    issued = await api_key_service.issue_api_key(
        session,
        SYSTEM,
        org.id,
        fields.pop("name", f"key {_n()}"),
        scopes=scopes,
        pepper=pepper,
        **fields,
    )
    return issued


async def make_position(
    session: AsyncSession, device: Device, fix_time: datetime, **fields: Any
) -> Position:
    position = Position(
        **{
            "device_id": device.id,
            "org_id": device.org_id,
            "fix_time": fix_time,
            "lat": 52.52,
            "lon": 13.405,
            **fields,
        }
    )
    session.add(position)
    await session.flush()
    return position


async def make_device_state(session: AsyncSession, device: Device, **fields: Any) -> DeviceState:
    """The device's state as the worker leaves it (``last_fix_time``, ``last_lat``, ...)."""
    state = DeviceState(**{"device_id": device.id, "org_id": device.org_id, **fields})
    session.add(state)
    await session.flush()
    return state


async def make_trip(
    session: AsyncSession,
    device: Device,
    start_time: datetime,
    end_time: datetime | None = None,
    **fields: Any,
) -> Trip:
    """A trip of the device in its organization, from (52.5, 13.4) to (52.6, 13.5) unless
    ``fields`` say otherwise; open without ``end_time``."""
    trip = Trip(
        **{
            "org_id": device.org_id,
            "device_id": device.id,
            "start_time": start_time,
            "end_time": end_time,
            "start_lat": 52.5,
            "start_lon": 13.4,
            "end_lat": 52.6,
            "end_lon": 13.5,
            **fields,
        }
    )
    session.add(trip)
    await session.flush()
    return trip


async def make_stop(
    session: AsyncSession,
    device: Device,
    start_time: datetime,
    end_time: datetime | None = None,
    **fields: Any,
) -> Stop:
    """A stop of the device in its organization, at (52.5, 13.4) unless ``fields`` say
    otherwise; open without ``end_time``."""
    stop = Stop(
        **{
            "org_id": device.org_id,
            "device_id": device.id,
            "start_time": start_time,
            "end_time": end_time,
            "lat": 52.5,
            "lon": 13.4,
            **fields,
        }
    )
    session.add(stop)
    await session.flush()
    return stop


async def make_alert_rule(
    session: AsyncSession,
    org_id: uuid.UUID,
    type: AlertType = AlertType.OVERSPEED,
    **fields: Any,
) -> AlertRule:
    """A rule of the organization ``org_id``, with no params unless ``fields`` say so."""
    rule = AlertRule(
        **{"org_id": org_id, "name": f"rule {_n()}", "type": type, "params": {}, **fields}
    )
    session.add(rule)
    await session.flush()
    return rule


async def make_alert(
    session: AsyncSession,
    device: Device,
    occurred_at: datetime,
    rule: AlertRule | None = None,
    **fields: Any,
) -> Alert:
    """An alert of ``rule`` (and of its type) about the device, in the device's organization;
    without ``rule``, of a new overspeed rule of that organization."""
    if rule is None:
        rule = await make_alert_rule(session, device.org_id)
    alert = Alert(
        **{
            "org_id": device.org_id,
            "device_id": device.id,
            "rule_id": rule.id,
            "type": rule.type,
            "occurred_at": occurred_at,
            **fields,
        }
    )
    session.add(alert)
    await session.flush()
    return alert


async def make_batch(
    session: AsyncSession,
    org_id: uuid.UUID,
    received_at: datetime,
    *,
    status: BatchStatus = BatchStatus.PROCESSED,
    rejected_items: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> IngestBatch:
    """An ingest batch of the organization received at ``received_at``; its rejected items
    (``{index, code, item}`` each) kept 7 days from then, as ingest keeps them."""
    items = rejected_items or []
    batch = IngestBatch(
        **{
            "org_id": org_id,
            "source": BatchSource.JSON,
            "status": status,
            "received_at": received_at,
            "rejected": len(items),
            "errors": [{"index": i["index"], "code": i["code"], "message": "x"} for i in items],
            "rejected_items": items,
            "rejected_items_expire_at": received_at + timedelta(days=7) if items else None,
            **fields,
        }
    )
    session.add(batch)
    await session.flush()
    return batch


async def make_history(session: AsyncSession, device: Device, at: datetime) -> None:
    """A row of the device at ``at`` in each table that keeps its history: a fix, a trip and
    a stop that ended, and an alert."""
    await make_position(session, device, at)
    await make_trip(session, device, at, at + timedelta(minutes=10))
    await make_stop(session, device, at, at + timedelta(minutes=10))
    await make_alert(session, device, at)


def principal_for(user: User) -> Principal:
    """The principal the apps would resolve for this user."""
    if user.platform_role is not None:
        return Principal(
            PrincipalKind.OPERATOR,
            user.id,
            None,
            user.email,
            platform_role=PlatformRole(user.platform_role),
        )
    return Principal(
        PrincipalKind.USER,
        user.id,
        user.org_id,
        user.email,
        role=OrgRole(user.role) if user.role else None,
    )


async def make_webhook_delivery(
    session: AsyncSession,
    org: Organization,
    status: DeliveryStatus = DeliveryStatus.PENDING,
    *,
    url: str = "https://hooks.example/x",
    secret_encrypted: str = "x",  # noqa: S107 - a placeholder, never decrypted
    **fields: Any,
) -> WebhookDelivery:
    """A delivery of an ``alert.created`` event to a new endpoint of the organization at
    ``url``; a dead one has used its 8 attempts; ``fields`` set any other column."""
    endpoint = WebhookEndpoint(
        org_id=org.id,
        url=url,
        secret_encrypted=secret_encrypted,
        event_types=["alert.created"],
    )
    session.add(endpoint)
    await session.flush()
    delivery = WebhookDelivery(
        org_id=org.id,
        endpoint_id=endpoint.id,
        event_id=uuid.uuid4(),
        event_type="alert.created",
        status=status,
        attempts=8 if status is DeliveryStatus.DEAD else 0,
        **fields,
    )
    session.add(delivery)
    await session.flush()
    return delivery
