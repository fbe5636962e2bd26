"""422s that say what to do about two common mistakes, for every route of every app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, Form, Query
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import AwareDatetime, BaseModel

from milepost_common.settings import CommonSettings, HttpSettings
from milepost_common.testing.plugin import app_client
from milepost_common.web.app import AppSpec, create_base_app
from milepost_common.web.errors import FORM_HINT, OFFSET_HINT

router = APIRouter(prefix="/v1")


class Window(BaseModel):
    from_: AwareDatetime | None = None


@router.get("/trips")
async def list_trips(
    start: Annotated[AwareDatetime, Query(alias="from")],
    limit: Annotated[int, Query(ge=1)] = 50,
) -> dict[str, str]:
    return {"from": start.isoformat()}


@router.get("/filtered")
async def list_filtered(window: Annotated[Window, Query()]) -> dict[str, str | None]:
    return {"from": window.from_.isoformat() if window.from_ else None}


@router.post("/token")
async def create_token(form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> dict[str, str]:
    return {"username": form.username}


@router.post("/note")
async def create_note(text: Annotated[str, Form()], when: datetime | None = None) -> None:
    return None


class Thing(BaseModel):
    name: str


@router.post("/things")
async def create_thing(body: Thing) -> Thing:
    return body


@pytest.fixture
async def client(kit_settings: CommonSettings) -> AsyncIterator[httpx.AsyncClient]:
    spec = AppSpec(
        name="kit", title="hints", description="", routers=(router,), http=HttpSettings()
    )
    async with app_client(create_base_app(kit_settings, spec)) as c:
        yield c


def error_of(response: httpx.Response) -> dict[str, object]:
    assert response.status_code == 422
    error: dict[str, object] = response.json()["error"]
    assert error["code"] == "validation_failed"
    return error


class TestUnencodedOffset:
    @pytest.mark.parametrize(
        "raw", ["2026-01-01T00:00:00+01:00", "2026-01-01T00:00:00.250+0530", "2026-01-01T08:00+01"]
    )
    async def test_a_plus_sent_as_is_gets_the_fix(
        self, client: httpx.AsyncClient, raw: str
    ) -> None:
        # httpx would encode the `+`; sent raw, as curl or a hand-built URL sends it.
        response = await client.get(f"/kit/v1/trips?from={raw}")

        error = error_of(response)
        assert OFFSET_HINT in str(error["message"])
        assert "encode `+` as `%2B` or use `Z`" in str(error["message"])
        assert error["details"] != []

    async def test_the_hint_holds_in_a_filter_model(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/kit/v1/filtered?from_=2026-01-01T00:00:00+01:00")

        assert OFFSET_HINT in str(error_of(response)["message"])

    async def test_an_encoded_plus_is_accepted(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/kit/v1/trips?from=2026-01-01T00:00:00%2B01:00")

        assert response.status_code == 200
        assert response.json() == {"from": "2026-01-01T00:00:00+01:00"}

    async def test_another_bad_value_gets_no_hint(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/kit/v1/trips?from=yesterday&limit=0")

        assert str(error_of(response)["message"]) == "The request is not valid."


class TestJsonToAForm:
    async def test_json_to_the_oauth2_form_gets_the_fix(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/kit/v1/token", json={"username": "a", "password": "b"})

        message = str(error_of(response)["message"])
        assert FORM_HINT in message
        assert "send `application/x-www-form-urlencoded`" in message

    async def test_no_body_at_all_gets_the_fix(self, client: httpx.AsyncClient) -> None:
        assert FORM_HINT in str(error_of(await client.post("/kit/v1/note"))["message"])

    async def test_a_form_missing_a_field_gets_no_hint(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/kit/v1/token", data={"username": "a"})

        assert FORM_HINT not in str(error_of(response)["message"])

    async def test_a_form_is_accepted(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/kit/v1/token", data={"username": "a", "password": "b"})

        assert response.json() == {"username": "a"}

    async def test_json_to_a_json_route_gets_no_hint(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/kit/v1/things", json={})

        assert FORM_HINT not in str(error_of(response)["message"])
