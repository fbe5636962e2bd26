"""A receiver whose name never resolves (its DNS black-holed) costs its own attempts their
deadline and holds one resolver thread; every other receiver in the process is reached as
promptly as ever (many attempts at once: the api's test pings)."""

from __future__ import annotations

import asyncio
import http.server
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from milepost_common.domain.webhooks import sending
from milepost_common.testing.dns import BlackHole, black_holed

# More attempts than the event loop's default executor has threads (min(32, cpus + 4)):
# the pool name resolution used to share with everything else the process runs in threads.
HUNG_ATTEMPTS = min(32, (os.cpu_count() or 1) + 4) + 2


class Ok(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def localhost_receiver() -> Iterator[str]:
    """A receiver answering 200 at ``localhost``'s first address (the one connected to)."""
    family, _, _, _, address = socket.getaddrinfo("localhost", 0, type=socket.SOCK_STREAM)[0]

    class Server(http.server.ThreadingHTTPServer):
        address_family = family

    server = Server((str(address[0]), 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://localhost:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture
def hung() -> Iterator[BlackHole]:
    """A receiver name of this test's own whose DNS never answers."""
    with black_holed(f"hung-{uuid.uuid4().hex[:8]}.receiver.test") as hole:
        yield hole


async def attempt(client: Any, url: str, timeout_s: float) -> sending.Sent:
    return await sending.send_signed(
        client,
        url,
        "secret",
        uuid.uuid4(),
        b"{}",
        allow_private=True,
        timeout_s=timeout_s,
        max_response_bytes=1024,
    )


class TestResolveReceiver:
    async def test_a_name_hung_in_dns_delays_no_other_receiver(
        self, hung: BlackHole, localhost_receiver: str
    ) -> None:
        port = localhost_receiver.split(":")[2].split("/")[0]
        async with sending.receiver_client() as client:
            stuck = [
                asyncio.create_task(attempt(client, f"http://{hung.name}:{port}/hook", 1.0))
                for _ in range(HUNG_ATTEMPTS)
            ]
            await asyncio.sleep(0.2)  # every one of them waiting on the name
            started = time.monotonic()
            other = await attempt(client, localhost_receiver, 3.0)
            elapsed = time.monotonic() - started
            timed_out = await asyncio.gather(*stuck)

        assert (other.status_code, other.error) == (200, None)
        assert elapsed < 2.0
        assert {sent.error for sent in timed_out} == {"timeout: no complete answer within 1 s"}

    async def test_a_hung_name_holds_one_thread_however_often_it_is_tried(
        self, hung: BlackHole
    ) -> None:
        async with sending.receiver_client() as client:
            together = await asyncio.gather(
                *(attempt(client, f"https://{hung.name}/hook", 0.3) for _ in range(HUNG_ATTEMPTS))
            )
            after = await attempt(client, f"https://{hung.name}/hook", 0.3)

        assert {sent.error for sent in [*together, after]} == {
            "timeout: no complete answer within 0.3 s"
        }
        assert (hung.calls, hung.blocked) == (1, 1)
