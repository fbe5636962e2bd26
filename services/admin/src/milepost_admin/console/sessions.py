"""Console sessions: an opaque cookie naming a record kept in Redis.

The cookie is HttpOnly, SameSite=Lax, Secure outside local development, scoped to
``/admin``. Redis holds only the SHA-256 of the cookie value, with the operator's id and
the session's CSRF token; the record expires when idle and at an absolute lifetime, and
logout deletes it. Whether the operator may still work is checked against the database
on every request, so a deactivation takes effect at once, and a session begun before its
operator's sessions were ended (a password changed or reset, a deactivation) is over.

What a form created and the next page shows once (an API key's secret, an invitation
link, an import's report) is kept beside the session under its own key for a few minutes:
the form answers with a redirect, and the page that follows takes it (``take``, one
atomic GETDEL: a reload shows a secret no more) or reads it (``peek``: an import's report
survives a reload); either way a reload re-submits nothing.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from redis.asyncio import Redis

KEY_PREFIX = "milepost:admin:session:"
ONCE_TTL_S = 600
ONCE_NAMES = ("secret", "import")


@dataclass(slots=True)
class ConsoleSession:
    user_id: uuid.UUID
    csrf: str
    created_at: float
    method: str
    flash: list[tuple[str, str]] = field(default_factory=list)

    def dump(self) -> bytes:
        return orjson.dumps(
            {
                "user_id": str(self.user_id),
                "csrf": self.csrf,
                "created_at": self.created_at,
                "method": self.method,
                "flash": self.flash,
            }
        )

    def begun_before(self, moment: datetime | None) -> bool:
        """Whether the session began at or before ``moment`` (its user's sessions ended then)."""
        return moment is not None and self.created_at <= moment.timestamp()

    @classmethod
    def load(cls, raw: bytes) -> ConsoleSession:
        data: dict[str, Any] = orjson.loads(raw)
        return cls(
            user_id=uuid.UUID(data["user_id"]),
            csrf=data["csrf"],
            created_at=float(data["created_at"]),
            method=data.get("method", "password"),
            flash=[(kind, text) for kind, text in data.get("flash", [])],
        )


def _key(token: str) -> str:
    return KEY_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def _once_key(token: str, name: str) -> str:
    return f"{_key(token)}:once:{name}"


class SessionStore:
    def __init__(self, redis: Redis, *, ttl_s: int, idle_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._idle_s = idle_s

    async def create(self, user_id: uuid.UUID, method: str) -> tuple[str, ConsoleSession]:
        """A new session; the returned token goes in the cookie and nowhere else."""
        token = secrets.token_urlsafe(32)
        record = ConsoleSession(user_id, secrets.token_urlsafe(32), time.time(), method)
        await self._redis.set(_key(token), record.dump(), ex=self._idle_s)
        return token, record

    async def get(self, token: str) -> ConsoleSession | None:
        """The live session, its idle timer restarted; None when unknown or expired."""
        raw = await self._redis.get(_key(token))
        if raw is None:
            return None
        record = ConsoleSession.load(raw)
        remaining = record.created_at + self._ttl_s - time.time()
        if remaining <= 0:
            await self.delete(token)
            return None
        await self._redis.expire(_key(token), int(min(self._idle_s, remaining)) + 1)
        return record

    async def save(self, token: str, record: ConsoleSession) -> None:
        await self._redis.set(_key(token), record.dump(), keepttl=True)

    async def delete(self, token: str) -> None:
        await self._redis.delete(_key(token), *(_once_key(token, n) for n in ONCE_NAMES))

    async def keep(self, token: str, name: str, payload: dict[str, Any]) -> None:
        """Keep ``payload`` for the session's next page (replacing an unshown one)."""
        await self._redis.set(_once_key(token, name), orjson.dumps(payload), ex=ONCE_TTL_S)

    async def take(self, token: str, name: str) -> dict[str, Any] | None:
        """The kept payload, removed in the same step: only one page ever shows it."""
        return _loaded(await self._redis.getdel(_once_key(token, name)))

    async def peek(self, token: str, name: str) -> dict[str, Any] | None:
        """The kept payload, left in place until it expires."""
        return _loaded(await self._redis.get(_once_key(token, name)))


def _loaded(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    payload: dict[str, Any] = orjson.loads(raw)
    return payload
