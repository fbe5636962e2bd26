"""Password login for both doors of the admin app (token endpoint and console form)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_admin.deps import AdminServices
from milepost_common.auth import Realm
from milepost_common.domain.sessions import service as sessions
from milepost_common.domain.sessions.errors import LoginFailed
from milepost_common.domain.users.models import User


async def log_in(
    session: AsyncSession,
    services: AdminServices,
    email: str,
    password: str,
    *,
    ip: str,
    request_id: str,
) -> User:
    """The operator, or LoginFailed (401, audited, counted) / RateLimited (429) after too
    many failures for this email or IP. Only operators log in here."""
    await services.throttle.check(email, ip)
    try:
        user = await sessions.authenticate(
            session, services.hasher, Realm.ADMIN, email, password, ip=ip, request_id=request_id
        )
    except LoginFailed:
        await services.throttle.failed(email, ip)
        raise
    return user
