"""The app as a whole: its OpenAPI document tells the truth about the routes."""

from __future__ import annotations

import httpx


async def test_openapi_documents_every_operation(client: httpx.AsyncClient) -> None:
    document = (await client.get("/ingest/openapi.json")).json()
    operations = {
        op["operationId"]: (path, method, op)
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    }
    assert {"ingest_positions", "get_batch", "ingest_osmand"} <= set(operations)
    _, _, push = operations["ingest_positions"]
    assert set(push["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
    assert {"202", "400", "401", "403", "409", "413", "415", "422", "429", "503"} <= set(
        push["responses"]
    )
    assert all(op.get("summary") and op.get("tags") for _, _, op in operations.values())
    assert operations["ingest_osmand"][:2] == ("/ingest/osmand/{api_key}", "get")
    assert operations["ingest_osmand_body"][:2] == ("/ingest/osmand/{api_key}", "post")
