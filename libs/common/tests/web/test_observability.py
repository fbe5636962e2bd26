import asyncio
import io
import json
import logging
import sys

import httpx
import pytest

from milepost_common.logging import AccessLog


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
    await asyncio.sleep(0)  # the loop's next turn writes the line
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


async def test_the_lines_of_one_loop_turn_reach_stdout_in_one_write(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[str] = []

    class Stdout(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

    monkeypatch.setattr(sys, "stdout", Stdout())
    answers = await asyncio.gather(*(client.get("/kit/health") for _ in range(20)))
    await asyncio.sleep(0)
    logged = [json.loads(line) for text in writes for line in text.splitlines()]
    ids = sorted(line["request_id"] for line in logged if line["event"] == "request")
    assert ids == sorted(answer.headers["X-Request-ID"] for answer in answers)
    # A write costs a fast request a tenth of its CPU: far fewer writes than lines.
    assert len(writes) < 10


def test_outside_an_event_loop_a_line_is_written_at_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    AccessLog().info("request", route="/offline")
    assert '"route":"/offline"' in capsys.readouterr().out


async def test_the_access_log_follows_its_loggers_level(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("milepost.access")
    before = logger.level
    logger.setLevel(logging.WARNING)
    try:
        capsys.readouterr()
        await client.get("/kit/health")
        await asyncio.sleep(0)
        assert '"event":"request"' not in capsys.readouterr().out
    finally:
        logger.setLevel(before)


async def test_security_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/kit/health")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
