"""The yardstick: a bare FastAPI app (no middleware, no auth): a constant, and a body of a
given size (the floor of a cached read: the same bytes, sent with nothing else to do).

    python -m bench.api.bare <port> [apps]

serves it with stock uvicorn, or with ``apps`` on the protocols the apps run
(``milepost_common.web.serve.PROTOCOLS``: each answer written in one call).
"""

import sys

import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response

from milepost_common.web.serve import PROTOCOLS

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


if __name__ == "__main__":
    protocols = PROTOCOLS if sys.argv[2:] == ["apps"] else {}
    port = int(sys.argv[1])
    uvicorn.run(
        app, host="127.0.0.1", port=port, access_log=False, log_level="warning", **protocols
    )
