"""The yardstick: a bare FastAPI app (no middleware, no auth): a constant, and a body of a
given size (the floor of a cached read: the same bytes, sent with nothing else to do)."""

from fastapi import FastAPI
from fastapi.responses import Response

app = FastAPI()
_BODIES: dict[int, bytes] = {}


@app.get("/bare")
async def bare() -> dict[str, bool]:
    return {"ok": True}


@app.get("/bytes/{size}")
async def sized(size: int) -> Response:
    body = _BODIES.get(size)
    if body is None:
        body = _BODIES[size] = b"x" * size
    return Response(body, media_type="application/json")
