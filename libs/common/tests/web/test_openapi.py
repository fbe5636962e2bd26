"""What the kit adds to every app's OpenAPI document: the answers any operation can meet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI

from milepost_common.settings import CommonSettings
from milepost_common.web.openapi import add_common_responses

ENVELOPE = {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}
PLAIN_TEXT = {"schema": {"type": "string"}}


@pytest.fixture
def document(
    kit_settings: CommonSettings, kit_app_factory: Callable[..., FastAPI]
) -> dict[str, Any]:
    schema: dict[str, Any] = kit_app_factory(kit_settings).openapi()
    return schema


def responses(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = document["paths"][path][method]["responses"]
    return found


class TestCommonResponses:
    def test_every_operation_documents_the_gateway_in_plain_text(
        self, document: dict[str, Any]
    ) -> None:
        for item in document["paths"].values():
            for operation in item.values():
                for status in ("429", "502", "503", "504"):
                    response = operation["responses"][status]
                    assert response["content"]["text/plain"] == PLAIN_TEXT, status
                for status in ("429", "503"):
                    assert "Retry-After" in operation["responses"][status]["headers"]

    def test_unavailable_is_the_envelope_too(self, document: dict[str, Any]) -> None:
        unavailable = responses(document, "get", "/kit/v1/deps")["503"]
        assert unavailable["content"]["application/json"] == ENVELOPE
        assert "`unavailable`" in unavailable["description"]

    def test_an_operation_with_a_body_documents_malformed_body(
        self, document: dict[str, Any]
    ) -> None:
        malformed = responses(document, "post", "/kit/v1/orgs")["400"]
        assert malformed["content"] == {"application/json": ENVELOPE}
        assert "`malformed_body`" in malformed["description"]
        assert "400" not in responses(document, "get", "/kit/v1/boom")

    def test_validation_errors_are_the_envelope_not_fastapis_own(
        self, document: dict[str, Any]
    ) -> None:
        invalid = responses(document, "get", "/kit/v1/orgs/{org_id}")["422"]
        assert invalid["content"] == {"application/json": ENVELOPE}
        assert "`validation_failed`" in invalid["description"]
        assert "HTTPValidationError" not in document["components"]["schemas"]
        assert "ValidationError" not in document["components"]["schemas"]

    def test_a_routes_own_answer_is_kept_and_extended(self) -> None:
        own = {"description": "`rate_limited`", "content": {"application/json": ENVELOPE}}
        schema = {"paths": {"/x": {"get": {"responses": {"429": own}}}}}
        limited = add_common_responses(schema)["paths"]["/x"]["get"]["responses"]["429"]
        assert limited["content"] == {"application/json": ENVELOPE, "text/plain": PLAIN_TEXT}
        assert limited["description"].startswith("`rate_limited`. The gateway's own answer")

    def test_adding_twice_changes_nothing(self, document: dict[str, Any]) -> None:
        assert add_common_responses(document) == add_common_responses(
            add_common_responses(document)
        )
