"""The admin JSON API's OpenAPI document: committed and current, every operation's errors
documented, and fuzzed in process as a superadmin (schemathesis): no 5xx, every answer as
documented, every error the envelope."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from admin_support import one_of_everything

from milepost_admin.main import create_app
from milepost_admin.openapi_export import DEFAULT_PATH, document
from milepost_admin.settings import AdminSettings
from milepost_common.domain.users.models import PlatformRole
from milepost_common.testing import fuzz
from milepost_common.testing.factories import DEFAULT_PASSWORD, make_operator

TOKEN_PATH = "/admin/v1/auth/token"


class TestDocument:
    def test_the_committed_document_is_current(self) -> None:
        fuzz.assert_committed_current(DEFAULT_PATH, document())

    def test_every_operation_documents_its_errors(self) -> None:
        # Behind the credential's dependency: none, a role too low, its rate.
        fuzz.assert_errors_documented(
            document(), lambda path: path.startswith("/admin/v1/") and path != TOKEN_PATH
        )


@pytest.fixture(scope="module")
async def target(
    template_database_url: str, settings_factory: Callable[..., AdminSettings]
) -> AsyncIterator[fuzz.Target]:
    """The admin app in process on a database of its own with one of everything, its rate
    and login limits raised; requests carry the token a superadmin gets by logging in."""
    async with fuzz.database_of_its_own(template_database_url) as url:
        settings = settings_factory(
            AdminSettings,
            db={"url": url, "pool_size": 2},
            auth={"principal_cache_s": 0, "login_attempts_per_minute": 1_000_000},
            admin={"rate_limit": "1000000/minute", "public_url": "https://fleet.example"},
        )
        async with fuzz.seeding(url) as session:
            superadmin = await make_operator(session, role=PlatformRole.SUPERADMIN)
            known = await one_of_everything(session)
        user = fuzz.LogIn(TOKEN_PATH, superadmin.email, DEFAULT_PASSWORD)
        with fuzz.serving(create_app(settings), "/admin/openapi.json", settings, known, user) as t:
            yield t


@pytest.mark.slow
def test_fuzzing_finds_no_server_error_and_no_undocumented_answer(target: fuzz.Target) -> None:
    target.fuzz(default_examples=6)


def test_every_json_body_that_cannot_be_parsed_is_a_documented_400(target: fuzz.Target) -> None:
    assert target.malformed_bodies() >= 9
