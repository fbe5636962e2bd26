"""The OpenAPI document: committed and current, every operation documented, and fuzzed
in process as an owner (schemathesis): no 5xx, every answer as documented, every error the
envelope."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from milepost_api.main import create_app
from milepost_api.openapi_export import DEFAULT_PATH, document
from milepost_api.settings import ApiSettings
from milepost_common.crypto import SecretBox
from milepost_common.domain.users.models import OrgRole
from milepost_common.domain.webhooks.models import WebhookEndpoint
from milepost_common.testing import fuzz
from milepost_common.testing.factories import DEFAULT_PASSWORD, make_organization, make_user
from services.api.tests.api_support import one_of_everything
from services.api.tests.test_security import PUBLIC


class TestDocument:
    def test_the_committed_document_is_current(self) -> None:
        fuzz.assert_committed_current(DEFAULT_PATH, document())

    def test_every_operation_is_documented(self) -> None:
        doc = document()
        ids = []
        for path, methods in doc["paths"].items():
            for method, op in methods.items():
                where = f"{method.upper()} {path}"
                ids.append(op["operationId"])
                assert op.get("summary"), where
                assert op.get("tags"), where
                if path.startswith("/api/v1/"):
                    assert op.get("description"), where
                    assert any(code.startswith("4") for code in op["responses"]), where
                if path.startswith("/api/v1/") and path not in PUBLIC:
                    assert {"401", "429"} <= set(op["responses"]), where
                for code, response in op["responses"].items():
                    if code.startswith(("4", "5")):
                        content = response["content"]
                        if "application/json" in content:
                            schema = content["application/json"]["schema"]
                            assert schema["$ref"].endswith("/ErrorEnvelope"), (where, code)
                        else:  # the gateway's own answer
                            assert set(content) == {"text/plain"}, (where, code)
                assert {"429", "502", "503", "504"} <= set(op["responses"]), where
                if "requestBody" in op:
                    assert "`malformed_body`" in op["responses"]["400"]["description"], where
        assert len(ids) == len(set(ids)), "operation ids must be unique"
        assert doc["components"]["securitySchemes"]["BearerToken"]["type"] == "oauth2"
        assert "example" in doc["components"]["schemas"]["VehicleRead"]


@pytest.fixture(scope="module")
async def target(
    template_database_url: str, settings_factory: Callable[..., ApiSettings]
) -> AsyncIterator[fuzz.Target]:
    """The api in process on a database of its own holding one of everything, its rate and
    login limits raised; requests carry the token an owner gets by logging in."""
    async with fuzz.database_of_its_own(template_database_url) as url:
        settings = settings_factory(
            ApiSettings,
            db={"url": url, "pool_size": 2},
            auth={"principal_cache_s": 0, "login_attempts_per_minute": 1_000_000},
            api={"rate_limit": "1000000/minute"},
        )
        async with fuzz.seeding(url) as session:
            org = await make_organization(session)
            owner = await make_user(session, org, role=OrgRole.OWNER)
            manager = await make_user(session, org, role=OrgRole.MANAGER)
            ids = await one_of_everything(session, org, manager)
            # A secret the app can decrypt: test pings and rotations of the known webhook work.
            webhook = await session.get(WebhookEndpoint, ids["webhook_id"])
            assert webhook is not None
            assert settings.auth.secrets_key is not None
            webhook.secret_encrypted = SecretBox(
                settings.auth.secrets_key.get_secret_value()
            ).encrypt("fuzz-secret")
        user = fuzz.LogIn("/api/v1/auth/token", owner.email, DEFAULT_PASSWORD)
        with fuzz.serving(create_app(settings), "/api/openapi.json", settings, ids, user) as t:
            yield t


@pytest.mark.slow
def test_fuzzing_finds_no_server_error_and_no_undocumented_answer(target: fuzz.Target) -> None:
    target.fuzz(default_examples=6)


def test_every_json_body_that_cannot_be_parsed_is_a_documented_400(target: fuzz.Target) -> None:
    assert target.malformed_bodies() > 15
