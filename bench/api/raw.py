"""The physical floor of a large cached read: a raw socket server, no HTTP framework.

Answers every ``GET /bytes/<size>`` on a keep-alive connection with a prebuilt response of
that many body bytes, written in one call on the same event loop uvicorn runs (uvloop). What
it reaches is the most any Python server on this machine can send of those bytes: the rest
is the kernel's copies and loopback TCP, shared with the load client on the same cores.

    python -m bench.api.raw <port>
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

import uvloop

_RESPONSES: dict[bytes, bytes] = {}


def _response(path: bytes) -> bytes:
    found = _RESPONSES.get(path)
    if found is None:
        size = int(path.rsplit(b"/", 1)[-1]) if path.startswith(b"/bytes/") else 2
        body = b"x" * size
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        found = _RESPONSES[path] = head + b"content-length: %d\r\n\r\n" % size + body
    return found


class _Http(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport, self.pending = cast(asyncio.Transport, transport), b""

    def data_received(self, data: bytes) -> None:
        # wrk sends GETs without bodies: each head ends at a blank line.
        self.pending += data
        while (end := self.pending.find(b"\r\n\r\n")) >= 0:
            head, self.pending = self.pending[:end], self.pending[end + 4 :]
            self.transport.write(_response(head.split(b" ", 2)[1]))


async def _serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Http, "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(_serve(int(sys.argv[1])))
