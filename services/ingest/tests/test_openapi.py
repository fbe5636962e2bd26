"""The ingest app's OpenAPI document: committed and current, every operation's errors
documented, and fuzzed in process with an API key (schemathesis): no 5xx, every answer as
documented, every error the envelope."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest

from milepost_common.testing import fuzz
from milepost_common.testing.factories import (
    make_api_key,
    make_batch,
    make_device,
    make_organization,
)
from milepost_ingest.main import create_app
from milepost_ingest.openapi_export import DEFAULT_PATH, document
from milepost_ingest.settings import IngestSettings


class TestDocument:
    def test_the_committed_document_is_current(self) -> None:
        fuzz.assert_committed_current(DEFAULT_PATH, document())

    def test_every_operation_documents_its_errors(self) -> None:
        # Behind the credential's dependency: none, a role too low, its rate.
        fuzz.assert_errors_documented(
            document(), lambda path: path.startswith(("/ingest/v1/", "/ingest/osmand/"))
        )


@pytest.fixture(scope="module")
async def target(
    template_database_url: str, settings_factory: Callable[..., IngestSettings]
) -> AsyncIterator[fuzz.Target]:
    """The ingest app in process on a database of its own with a device, a batch and an API
    key (sent as `Authorization: Bearer`, and as the OsmAnd path's key); its rate raised."""
    async with fuzz.database_of_its_own(template_database_url) as url:
        settings = settings_factory(
            IngestSettings,
            db={"url": url, "pool_size": 2},
            auth={"principal_cache_s": 0},
            ingest={"rate_limit": "1000000/minute", "osmand_linger_s": 0.0, "tune_gc": False},
        )
        async with fuzz.seeding(url) as session:
            org = await make_organization(session)
            device = await make_device(session, org)
            key = await make_api_key(session, org)
            batch = await make_batch(session, org.id, datetime.now(UTC) - timedelta(minutes=5))
            known = {"batch_id": batch.id, "api_key": key.secret, "id": device.unique_id}
        user = {"Authorization": f"Bearer {key.secret}"}
        with fuzz.serving(create_app(settings), "/ingest/openapi.json", settings, known, user) as t:
            yield t


@pytest.mark.slow
def test_fuzzing_finds_no_server_error_and_no_undocumented_answer(target: fuzz.Target) -> None:
    target.fuzz(default_examples=25, every_one_succeeds=True)


def test_every_json_body_that_cannot_be_parsed_is_a_documented_400(target: fuzz.Target) -> None:
    assert target.malformed_bodies() == 2
