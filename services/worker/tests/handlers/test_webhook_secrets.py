"""A receiver's URL may carry its own token (in the query or the path) and every delivery is
signed with the endpoint's secret: whatever an attempt comes to, neither reaches a log line
or what is recorded of the attempt (``last_error``, the attempt log), which owners and
operators read."""

from __future__ import annotations

import http.server
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_common.domain.webhooks.models import WebhookDelivery
from milepost_common.logging import configure_logging
from milepost_common.testing.factories import make_organization, make_webhook_delivery
from milepost_worker.handlers.webhooks import deliver
from milepost_worker.runtime import WorkerContext
from milepost_worker.timeutil import utcnow

TOKEN = "rcvtoken-never-shown-7c1"
SIGNING = "mpwh_signing-never-shown-9f2"


class Failing(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def failing() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """What the worker logs as it runs (its own logging set up, at its most verbose): the
    records and the JSON lines on stdout."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("DEBUG", service="worker")
    root.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.DEBUG)
    capsys.readouterr()
    yield lambda: caplog.text + capsys.readouterr().out
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("outcome", ["answered 500", "connection refused", "address refused"])
async def test_no_attempt_records_or_logs_the_url_or_the_secret(
    ctx: WorkerContext,
    session: AsyncSession,
    failing: int,
    logged: Any,
    outcome: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = {"answered 500": failing, "connection refused": closed_port()}.get(outcome, failing)
    url = f"http://127.0.0.1:{port}/hooks/{TOKEN}-path?token={TOKEN}"
    if outcome == "address refused":
        monkeypatch.setattr(ctx.settings.webhooks, "allow_private", False)
    row = await make_webhook_delivery(
        session,
        await make_organization(session),
        url=url,
        secret_encrypted=ctx.box.encrypt(SIGNING),
        payload={"id": "x", "type": "alert.created"},
        next_attempt_at=utcnow(),
    )
    await session.commit()

    await deliver(ctx, row.id)

    found = await session.get(WebhookDelivery, row.id, populate_existing=True)
    assert found is not None
    assert found.attempts == 1
    assert found.last_error
    recorded = f"{found.last_error} {found.attempt_log}"
    text = logged()
    assert "webhook_attempt" in text  # the attempt's own line was captured
    for secret in (TOKEN, SIGNING):
        assert secret not in recorded
        assert secret not in text
