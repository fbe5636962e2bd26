import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.auth import Realm, TokenCodec
from milepost_common.domain.api_keys.repository import ApiKeyRepository
from milepost_common.domain.principals import PrincipalKind, PrincipalResolver
from milepost_common.domain.users.models import OrgRole, PlatformRole
from milepost_common.errors import Unauthorized
from milepost_common.settings import AuthSettings
from milepost_common.testing.factories import (
    make_api_key,
    make_operator,
    make_organization,
    make_user,
)

CODEC = TokenCodec(
    AuthSettings(jwt_keys={"k": SecretStr("k" * 40)}, admin_jwt_keys={"a": SecretStr("a" * 40)}),
    Realm.API,
    Realm.ADMIN,
)


def resolver() -> PrincipalResolver:
    return PrincipalResolver(CODEC, cache_ttl_s=0)


class TestAccessTokens:
    async def test_member_resolves_with_org_and_role(self, session: AsyncSession) -> None:
        user = await make_user(session, role=OrgRole.MANAGER)
        token, _ = CODEC.issue(user.id, Realm.API, 60)
        principal = await resolver().from_access_token(session, token, Realm.API)
        assert principal.kind is PrincipalKind.USER
        assert principal.org_id == user.org_id
        assert principal.role is OrgRole.MANAGER

    async def test_suspended_org_is_refused_on_the_next_request(
        self, session: AsyncSession
    ) -> None:
        org = await make_organization(session)
        user = await make_user(session, org)
        token, _ = CODEC.issue(user.id, Realm.API, 60)
        await resolver().from_access_token(session, token, Realm.API)
        org.suspended_at = datetime.now(UTC)
        await session.flush()
        with pytest.raises(Unauthorized):
            await resolver().from_access_token(session, token, Realm.API)

    async def test_deactivated_user_is_refused(self, session: AsyncSession) -> None:
        user = await make_user(session, is_active=False)
        token, _ = CODEC.issue(user.id, Realm.API, 60)
        with pytest.raises(Unauthorized):
            await resolver().from_access_token(session, token, Realm.API)

    async def test_operator_token_does_not_open_the_public_api(self, session: AsyncSession) -> None:
        operator = await make_operator(session, role=PlatformRole.SUPPORT)
        token, _ = CODEC.issue(operator.id, Realm.API, 60)
        with pytest.raises(Unauthorized):
            await resolver().from_access_token(session, token, Realm.API)

    async def test_member_cannot_use_admin_realm(self, session: AsyncSession) -> None:
        user = await make_user(session)
        token, _ = CODEC.issue(user.id, Realm.ADMIN, 60)
        with pytest.raises(Unauthorized):
            await resolver().from_access_token(session, token, Realm.ADMIN)


class TestApiKeys:
    async def test_valid_key_resolves_to_its_org(self, session: AsyncSession) -> None:
        org = await make_organization(session)
        issued = await make_api_key(session, org)
        principal = await resolver().from_api_key(session, issued.secret)
        assert principal.org_id == org.id
        assert "ingest" in principal.scopes

    @pytest.mark.parametrize("state", ["revoked", "expired", "suspended", "wrong"])
    async def test_unusable_keys_are_refused(self, session: AsyncSession, state: str) -> None:
        org = await make_organization(session)
        issued = await make_api_key(session, org)
        now = datetime.now(UTC)
        secret = issued.secret
        if state == "revoked":
            issued.api_key.revoked_at = now
        elif state == "expired":
            issued.api_key.expires_at = now - timedelta(seconds=1)
        elif state == "suspended":
            org.suspended_at = now
        else:
            secret = secret[:-1] + ("A" if secret[-1] != "A" else "B")
        await session.flush()
        with pytest.raises(Unauthorized):
            await resolver().from_api_key(session, secret)

    async def test_a_cached_key_stops_at_its_expiry_not_at_the_cache_s_end(
        self, session: AsyncSession
    ) -> None:
        """The cache may hide a revocation for a few seconds, but an expiry is a moment the
        owner chose: the key is refused from then on, however long the cache keeps keys."""
        org = await make_organization(session)
        issued = await make_api_key(
            session, org, expires_at=datetime.now(UTC) + timedelta(milliseconds=300)
        )
        cached = PrincipalResolver(CODEC, cache_ttl_s=60)
        await cached.from_api_key(session, issued.secret)
        await asyncio.sleep(0.4)
        with pytest.raises(Unauthorized):
            await cached.from_api_key(session, issued.secret)


class TestBusyCallers:
    """A key or token of a busy client expires from the cache while many of its requests are
    in flight: one lookup serves them all (single flight), not one each."""

    async def test_concurrent_requests_of_one_key_look_it_up_once(
        self, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        org = await make_organization(session)
        secret = (await make_api_key(session, org)).secret
        lookups = 0
        real = ApiKeyRepository.find_by_prefix_with_organization

        async def counted(self: ApiKeyRepository, prefix: str) -> Any:
            nonlocal lookups
            lookups += 1
            await asyncio.sleep(0.02)  # the database's time, during which others arrive
            return await real(self, prefix)

        monkeypatch.setattr(ApiKeyRepository, "find_by_prefix_with_organization", counted)
        shared = PrincipalResolver(CODEC, cache_ttl_s=5)
        principals = await asyncio.gather(
            *(shared.from_api_key(session, secret) for _ in range(10))
        )
        assert {p.org_id for p in principals} == {org.id}
        assert lookups == 1
