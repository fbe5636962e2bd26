"""``make_<entity>`` factories: rows written through the session, flushed, returned.

Passwords use argon2 with the cheapest parameters: the suite hashes many of them.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from typing import Any

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.api_keys import service as api_key_service
from milepost_common.domain.api_keys.models import Scope
from milepost_common.domain.devices.models import Device
from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.positions.models import Position
from milepost_common.domain.principals import SYSTEM, Principal, PrincipalKind
from milepost_common.domain.users.models import OrgRole, PlatformRole, User

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
