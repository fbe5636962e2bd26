"""/health (alive) and /ready (dependencies reachable) for every app."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Literal

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import text

from milepost_common.web.middleware import request_id_of

CHECK_TIMEOUT_S = 2.0
Check = Callable[[Request], Awaitable[None]]


class Health(BaseModel):
    status: Literal["ok"]


_ALIVE = Health(status="ok").model_dump_json().encode()


class Readiness(BaseModel):
    status: Literal["ok"]
    checks: dict[str, str]


async def check_postgres(request: Request) -> None:
    async with request.app.state.db.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def check_redis(request: Request) -> None:
    await request.app.state.redis.ping()


async def _run(check: Check, request: Request) -> str:
    try:
        await asyncio.wait_for(check(request), CHECK_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return f"unavailable: {type(exc).__name__}"
    return "ok"


def health_router(checks: dict[str, Check]) -> APIRouter:
    """Routes for ``/health`` and ``/ready``; ``checks`` names each dependency /ready needs."""
    router = APIRouter(tags=["health"])

    @router.get(
        "/health",
        summary="Liveness: the process answers",
        operation_id="health",
        response_model=Health,
    )
    async def health() -> Response:
        # The constant's bytes: a probe polled every few seconds needs no serializer.
        return Response(_ALIVE, media_type="application/json")

    @router.get(
        "/ready",
        summary="Readiness: every dependency this app needs answers",
        operation_id="ready",
        response_model=Readiness,
        responses={503: {"description": "A dependency is unavailable; `checks` names it."}},
    )
    async def ready(request: Request) -> Readiness | Response:
        names = list(checks)
        results = dict(
            zip(
                names, await asyncio.gather(*(_run(checks[n], request) for n in names)), strict=True
            )
        )
        if all(v == "ok" for v in results.values()):
            return Readiness(status="ok", checks=results)
        failing = [n for n, v in results.items() if v != "ok"]
        body = {
            "error": {
                "code": "unavailable",
                "message": f"Not ready: {', '.join(failing)} unavailable.",
                "details": [
                    {"loc": [n], "msg": results[n], "type": "dependency_unavailable"}
                    for n in failing
                ],
                "trace_id": request_id_of(request.scope),
            },
            "checks": results,
        }
        return Response(
            orjson.dumps(body), 503, headers={"Retry-After": "5"}, media_type="application/json"
        )

    return router
