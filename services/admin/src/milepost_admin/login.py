"""Password login for both doors of the admin app (token endpoint and console form)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from milepost_admin.context import AdminContext
from milepost_common.auth import Realm
from milepost_common.domain.sessions import service as sessions
from milepost_common.domain.users.models import User


async def log_in(
    session: AsyncSession,
    ctx: AdminContext,
    email: str,
    password: str,
    *,
    ip: str,
    request_id: str,
) -> User:
    """The operator, or LoginFailed (401, audited) / RateLimited (429) after too many
    attempts for this email or IP. The attempt is counted before the password is checked and
    released on success. Only operators log in here."""
    async with ctx.throttle.attempt(email, ip):
        return await sessions.authenticate(
            session, ctx.hasher, Realm.ADMIN, email, password, ip=ip, request_id=request_id
        )
