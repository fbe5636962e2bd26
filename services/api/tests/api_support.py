"""Helpers the api's tests share (fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from milepost_common.domain.organizations.models import Organization
from milepost_common.domain.users.models import User

Bearer = Callable[..., dict[str, str]]


@dataclass
class Team:
    org: Organization
    owner: User
    manager: User
    viewer: User


def error_code(response: httpx.Response) -> Any:
    return response.json()["error"]["code"]
