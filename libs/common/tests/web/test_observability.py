import json
import logging

import httpx
import pytest


async def test_metrics_are_labelled_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/kit/v1/orgs/12345")
    metrics = (await client.get("/metrics")).text
    assert 'route="/kit/v1/orgs/{org_id}"' in metrics
    assert "/kit/v1/orgs/12345" not in metrics  # the raw path never becomes a label
    assert "milepost_http_request_duration_seconds_bucket" in metrics


async def test_one_access_log_line_without_the_raw_path(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    response = await client.get("/kit/v1/orgs/98765")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    access = [line for line in lines if line.get("event") == "request"]
    assert len(access) == 1
    line = access[0]
    assert line["route"] == "/kit/v1/orgs/{org_id}"
    assert line["status"] == 404
    assert line["method"] == "GET"
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert line["service"] == "kit"
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")
    assert isinstance(line["duration_ms"], float)
    assert "98765" not in json.dumps(line)


async def test_the_access_log_follows_its_loggers_level(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("milepost.access")
    before = logger.level
    logger.setLevel(logging.WARNING)
    try:
        capsys.readouterr()
        await client.get("/kit/health")
        assert '"event":"request"' not in capsys.readouterr().out
    finally:
        logger.setLevel(before)


async def test_security_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/kit/health")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
