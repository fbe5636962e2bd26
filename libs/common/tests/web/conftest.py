"""A small app built by the real factory, with routes that exercise the kit."""

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel

from milepost_common.db import Database
from milepost_common.domain.organizations.models import Organization
from milepost_common.errors import Conflict, NotFound
from milepost_common.settings import CommonSettings, HttpSettings
from milepost_common.testing.plugin import app_client
from milepost_common.web.app import AppSpec, create_base_app
from milepost_common.web.deps import SessionDep


class OrgIn(BaseModel):
    name: str


class KeepsTransaction(Conflict):
    commits = True


router = APIRouter(prefix="/v1")


@router.get("/orgs/{org_id}")
async def get_org(org_id: int) -> dict[str, int]:
    raise NotFound("Organization not found.")


@router.post("/orgs", status_code=201)
async def create_org(body: OrgIn, session: SessionDep) -> dict[str, str]:
    org = Organization(name=body.name)
    session.add(org)
    await session.flush()
    return {"id": str(org.id)}


@router.post("/orgs-then-fail")
async def create_org_then_fail(body: OrgIn, session: SessionDep) -> None:
    session.add(Organization(name=body.name))
    await session.flush()
    raise Conflict("Nope.")


@router.post("/orgs-then-fail-keeping")
async def create_org_then_fail_keeping(body: OrgIn, session: SessionDep) -> None:
    session.add(Organization(name=body.name))
    await session.flush()
    raise KeepsTransaction("Recorded, then refused.")


@router.get("/boom")
async def boom() -> None:
    raise RuntimeError("secret internal detail")


def _noop() -> None:
    return None


@router.get("/deps")
async def with_dep(_: Annotated[None, Depends(_noop)]) -> dict[str, Any]:
    return {"ok": True}


def build_app(settings: CommonSettings, *, redis_required: bool = True) -> FastAPI:
    spec = AppSpec(
        name="kit",
        title="kit test app",
        description="",
        routers=(router,),
        http=HttpSettings(),
        redis_required_for_ready=redis_required,
    )
    return create_base_app(settings, spec)


@pytest.fixture
def kit_app_factory() -> Callable[..., FastAPI]:
    return build_app


@pytest.fixture
def kit_settings(settings_factory: Callable[..., CommonSettings]) -> CommonSettings:
    return settings_factory(CommonSettings)


@pytest.fixture
async def client(
    kit_settings: CommonSettings, database: Database
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(build_app(kit_settings), database) as c:
        yield c
