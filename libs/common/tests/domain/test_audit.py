from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.audit import service as audit
from milepost_common.domain.principals import Principal, PrincipalKind
from milepost_common.testing.factories import make_user


async def test_record_keeps_context_and_redacts_secrets(session: AsyncSession) -> None:
    user = await make_user(session)
    actor = Principal(
        PrincipalKind.USER,
        user.id,
        user.org_id,
        user.email,
        ip="203.0.113.7",
        request_id="req-123456",
    )
    entry = await audit.record(
        session,
        actor,
        "webhooks.create",
        target_type="webhook",
        target_id="w1",
        diff={"url": "https://x", "secret": "whsec_1", "nested": {"password": "p"}},
    )
    assert entry.org_id == user.org_id
    assert entry.ip == "203.0.113.7"
    assert entry.request_id == "req-123456"
    assert entry.diff == {
        "url": "https://x",
        "secret": "[redacted]",
        "nested": {"password": "[redacted]"},
    }
