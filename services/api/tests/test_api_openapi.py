"""The OpenAPI document: committed and current, every operation documented, and fuzzed
(schemathesis over a real server) without a single 5xx."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from milepost_api.main import create_app
from milepost_api.openapi_export import DEFAULT_PATH, document, render
from milepost_api.settings import ApiSettings
from milepost_common.auth import Realm, TokenCodec
from milepost_common.db import create_database, unit_of_work
from milepost_common.settings import DbSettings
from milepost_common.testing.factories import make_device, make_organization, make_user
from milepost_common.testing.plugin import clone_database, drop_database
from services.api.tests.test_api_security import PUBLIC


class TestDocument:
    def test_the_committed_document_is_current(self) -> None:
        assert DEFAULT_PATH.read_bytes() == render(document()), (
            "docs/openapi/api.json is stale: run `uv run python -m milepost_api.openapi_export`"
        )

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
                    if code.startswith(("4", "5")) and code != "503":
                        schema = response["content"]["application/json"]["schema"]
                        assert schema["$ref"].endswith("/ErrorEnvelope"), (where, code)
        assert len(ids) == len(set(ids)), "operation ids must be unique"
        assert doc["components"]["securitySchemes"]["BearerToken"]["type"] == "oauth2"
        assert "example" in doc["components"]["schemas"]["VehicleRead"]


@pytest.fixture(scope="module")
async def fuzz_target(
    template_database_url: str, settings_factory: Callable[..., ApiSettings]
) -> AsyncIterator[tuple[str, str]]:
    """A real api server on its own database with one organization; yields (url, token)."""
    url = await clone_database(template_database_url, "milepost_fuzz")
    db = create_database(DbSettings(url=url, pool_size=2))
    async with unit_of_work(db) as session:
        org = await make_organization(session)
        owner = await make_user(session, org)
        await make_device(session, org)
    await db.dispose()
    api_settings = settings_factory(
        ApiSettings, db={"url": url}, api={"rate_limit": "1000000/minute"}
    )
    token, _ = TokenCodec(api_settings.auth, Realm.API).issue(owner.id, Realm.API, 3600)
    server = uvicorn.Server(
        uvicorn.Config(create_app(api_settings), host="127.0.0.1", port=0, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no started event
            await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", token
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 15)
        await drop_database(url)


@pytest.mark.slow
def test_fuzzing_finds_no_server_error(fuzz_target: tuple[str, str]) -> None:
    """A few generated requests per operation (schemathesis' pytest plugin predates the
    pytest here, so operations are driven one by one)."""
    base, token = fuzz_target
    schema = schemathesis.openapi.from_url(f"{base}/api/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    operations = [cast(Any, result).ok() for result in schema.get_all_operations()]
    assert len(operations) > 40
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=3,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        call()
