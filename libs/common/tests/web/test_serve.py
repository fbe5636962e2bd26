"""The apps' HTTP protocol (web.serve.HttpProtocol) on a real loopback socket: each answer
reaches the socket in one write, and holding writes back loses, reorders or keeps nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.types import Receive, Scope, Send

from milepost_common.web.serve import COALESCE_MAX_BYTES, HttpProtocol

CHUNK = b"c" * 1000
CHUNKS = 300  # 300 KB, sent without the app ever waiting


class _Recorder:
    """The real transport, noting what reaches it in each call."""

    def __init__(self, transport: asyncio.Transport, calls: list[list[bytes]]) -> None:
        self._transport = transport
        self._calls = calls

    def write(self, data: bytes) -> None:
        self._calls.append([bytes(data)])
        self._transport.write(data)

    def writelines(self, chunks: Any) -> None:
        chunks = [bytes(c) for c in chunks]
        self._calls.append(chunks)
        self._transport.writelines(chunks)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(CHUNKS):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    answer = b"echo:" + scope["path"].encode() + b":" + body
    headers = [(b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@asynccontextmanager
async def server() -> AsyncIterator[tuple[int, list[list[bytes]]]]:
    calls: list[list[bytes]] = []

    class Recording(HttpProtocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(_Recorder(transport, calls))

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, http=Recording, lifespan="off", log_config=None
    )
    served = uvicorn.Server(config)
    task = asyncio.create_task(served.serve())
    try:
        while not served.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield served.servers[0].sockets[0].getsockname()[1], calls
    finally:
        served.should_exit = True
        await asyncio.wait_for(task, 5)


async def exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` and read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


def get(path: str, *, close: bool = False) -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + connection + b"\r\n"


async def test_an_answer_reaches_the_socket_in_one_write() -> None:
    async with server() as (port, calls):
        answer = await exchange(port, get("/one", close=True))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\necho:/one:")
    # The head and the body, together: one system call and one TCP segment, not two.
    assert len(calls) == 1
    assert b"".join(calls[0]) == answer


async def test_pipelined_requests_are_answered_in_order() -> None:
    post = b"POST /posted HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody"
    async with server() as (port, _):
        answer = await exchange(port, get("/first") + post + get("/last", close=True))
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in answer.split(b"HTTP/1.1 200 OK")[1:]]
    assert bodies == [b"echo:/first:", b"echo:/posted:body", b"echo:/last:"]


async def test_a_client_expecting_100_continue_gets_it_before_sending_its_body() -> None:
    async with server() as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /expect HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.write(b"ok")
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert answer.endswith(b"echo:/expect:ok")


async def test_a_stream_sent_without_pause_goes_out_whole_and_in_bounded_writes() -> None:
    async with server() as (port, calls):
        answer = await exchange(port, get("/stream", close=True))
    head, _, chunked = answer.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    body = b""
    while True:
        size, _, rest = chunked.partition(b"\r\n")
        if int(size, 16) == 0:
            break
        body += rest[: int(size, 16)]
        chunked = rest[int(size, 16) + 2 :]
    assert body == CHUNK * CHUNKS
    # The app never waited, yet the transport got the bytes as they passed the bound (and
    # could pause the app, as uvicorn's flow control does), not all at the end.
    sizes = [sum(map(len, call)) for call in calls]
    assert len(sizes) > 1
    assert max(sizes) <= COALESCE_MAX_BYTES + len(CHUNK) + 16
