import json
import logging

import httpx
import pytest


async def test_metrics_are_labelled_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/kit/v1/orgs/12345")
    metrics = (await client.get("/metrics")).text
    assert 'route="/kit/v1/orgs/{org_id}"' in metrics
    assert "12345" not in metrics
    assert "milepost_http_request_duration_seconds_bucket" in metrics


async def test_one_access_log_line_without_the_raw_path(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="milepost.access")
    response = await client.get("/kit/v1/orgs/98765")
    lines = [r.msg for r in caplog.records if r.name == "milepost.access"]
    assert len(lines) == 1
    line = lines[0]
    assert isinstance(line, dict)
    assert line["route"] == "/kit/v1/orgs/{org_id}"
    assert line["status"] == 404
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert "98765" not in json.dumps(line)


async def test_security_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/kit/health")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
