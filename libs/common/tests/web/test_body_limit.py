"""The kit's body limit, on an app built by the real factory (no lifespan: nothing here
needs the database)."""

from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Form, Header
from pydantic import BaseModel
from starlette.types import Message, Receive, Scope, Send

from milepost_common.errors import Unauthorized
from milepost_common.settings import CommonSettings, Environment, HttpSettings
from milepost_common.web.app import AppSpec, create_base_app
from milepost_common.web.body_limit import BodyLimitMiddleware

LIMIT = 4096
LARGER = 3 * LIMIT
CHUNK = 1024
JSON = {"Content-Type": "application/json"}


class Note(BaseModel):
    text: str


class Gate:
    """A stand-in for authentication that records whether it ran."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, authorization: Annotated[str | None, Header()] = None) -> None:
        self.calls += 1
        if authorization != "Bearer ok":
            raise Unauthorized()


def build(gate: Gate) -> FastAPI:
    router = APIRouter(prefix="/v1")

    @router.post("/notes")
    async def create_note(body: Note, _: Annotated[None, Depends(gate)]) -> dict[str, int]:
        return {"length": len(body.text)}

    @router.post("/login")
    async def login(username: Annotated[str, Form()]) -> dict[str, int]:
        return {"length": len(username)}

    @router.post("/imports/{import_id}")
    async def upload(import_id: int, body: Note) -> dict[str, int]:
        return {"length": len(body.text)}

    @router.post("/imports/{import_id}/notes")
    async def annotate_import(import_id: int, body: Note) -> dict[str, int]:
        return {"length": len(body.text)}

    @router.get("/notes")
    async def list_notes() -> list[str]:
        return []

    spec = AppSpec(
        name="kit",
        title="kit",
        description="",
        routers=(router,),
        http=HttpSettings(max_body_bytes=LIMIT),
        larger_bodies={"/kit/v1/imports/{import_id}": LARGER},
    )
    return create_base_app(CommonSettings(env=Environment.TEST), spec)


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def app(gate: Gate) -> FastAPI:
    return build(gate)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


class Source:
    """A streamed JSON body of `total` bytes that counts the chunks the app pulled."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        prefix, suffix = b'{"text": "', b'"}'
        body_left = self.total - len(prefix) - len(suffix)
        yield prefix
        while body_left > 0:
            self.pulled += 1
            size = min(CHUNK, body_left)
            body_left -= size
            yield b"x" * size
        yield suffix


def assert_too_large(response: httpx.Response, limit: int = LIMIT) -> None:
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert str(limit) in error["message"]
    assert error["trace_id"] == response.headers["X-Request-ID"]


async def call_asgi(app: FastAPI, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """One POST /kit/v1/notes straight through ASGI; the answer and how often the app read."""
    reads = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        # Far less than declared: should the limit fail, the app still reaches an end.
        return {"type": "http.request", "body": b"x" * CHUNK, "more_body": reads < 16}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/kit/v1/notes",
        "raw_path": b"/kit/v1/notes",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return {
        "status": start["status"],
        "headers": dict(start["headers"]),
        "body": body,
        "reads": reads,
    }


class TestDeclaredLength:
    async def test_length_over_the_limit_is_refused_before_anything_reads(
        self, app: FastAPI, gate: Gate
    ) -> None:
        answer = await call_asgi(
            app,
            [(b"content-type", b"application/json"), (b"content-length", b"52428800")],
        )

        assert answer["status"] == 413
        assert answer["reads"] == 0
        assert gate.calls == 0
        assert b'"payload_too_large"' in answer["body"]
        assert answer["headers"][b"x-request-id"].decode() in answer["body"].decode()

    async def test_length_within_the_limit_is_read(
        self, client: httpx.AsyncClient, gate: Gate
    ) -> None:
        response = await client.post(
            "/kit/v1/notes", json={"text": "x" * 100}, headers={"Authorization": "Bearer ok"}
        )

        assert response.status_code == 200
        assert gate.calls == 1


class TestStreamedBody:
    async def test_chunked_body_is_cut_once_the_total_passes_the_limit(
        self, client: httpx.AsyncClient, gate: Gate
    ) -> None:
        source = Source(50 * 1024 * 1024)

        response = await client.post("/kit/v1/notes", content=source, headers=JSON)

        assert_too_large(response)
        # Pulled up to the chunk that crossed the limit, then never again.
        assert source.pulled <= LIMIT // CHUNK + 1
        assert gate.calls == 0

    async def test_streamed_form_over_the_limit_is_refused(self, client: httpx.AsyncClient) -> None:
        async def form() -> AsyncIterator[bytes]:
            yield b"username="
            for _ in range(2 * LIMIT // CHUNK):
                yield b"a" * CHUNK

        response = await client.post(
            "/kit/v1/login",
            content=form(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

        assert_too_large(response)

    async def test_listed_path_takes_its_larger_limit(self, client: httpx.AsyncClient) -> None:
        within = await client.post("/kit/v1/imports/1", content=Source(2 * LIMIT), headers=JSON)
        over = await client.post("/kit/v1/imports/1", content=Source(LARGER + 1), headers=JSON)

        assert within.status_code == 200
        assert_too_large(over, LARGER)

    async def test_other_paths_keep_the_default(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/kit/v1/imports/1/notes", content=Source(2 * LIMIT), headers=JSON
        )

        assert_too_large(response)


async def test_a_reader_outside_the_apps_handlers_still_gets_the_envelope() -> None:
    async def raw_reader(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limited = BodyLimitMiddleware(raw_reader, max_bytes=LIMIT)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=limited), base_url="http://testserver"
    ) as client:
        response = await client.post("/anything", content=Source(2 * LIMIT))

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


class TestOpenApi:
    def test_operations_with_a_body_document_the_413(self, app: FastAPI) -> None:
        paths = app.openapi()["paths"]

        documented = paths["/kit/v1/notes"]["post"]["responses"]["413"]
        assert documented["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorEnvelope"
        }
        assert str(LIMIT) in documented["description"]
        assert "413" in paths["/kit/v1/login"]["post"]["responses"]
        assert "413" not in paths["/kit/v1/notes"]["get"]["responses"]
        assert "ErrorEnvelope" in app.openapi()["components"]["schemas"]
