"""Cursor pagination and the list envelope ``{items, next_cursor}``.

A cursor is the sort key of the last item returned (its time or field value, then its id),
opaque to clients. Keyset pages neither skip nor repeat rows under concurrent inserts.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict

from milepost_common.errors import ValidationFailed

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


class Page(BaseModel, Generic[T]):
    model_config = ConfigDict(json_schema_extra={"example": {"items": [], "next_cursor": None}})

    items: list[T]
    next_cursor: str | None = None


def encode_cursor(key: Any, item_id: UUID) -> str:
    raw = orjson.dumps([key.isoformat() if isinstance(key, datetime) else key, str(item_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, UUID]:
    """Raises ValidationFailed (422) for anything that is not a cursor we issued."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key, item_id = orjson.loads(raw)
        if not isinstance(item_id, str):  # UUID() of a number or a list raises AttributeError
            raise TypeError(item_id)
        return key, UUID(item_id)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise ValidationFailed(
            "Invalid cursor.",
            details=[{"loc": ["query", "cursor"], "msg": "Invalid cursor.", "type": "value_error"}],
        ) from None


def cursor_time(key: Any) -> datetime:
    """The instant a cursor holds; raises ValidationFailed (422) for anything else, a time
    without its offset included (every cursor we issue has one: a naive time would be read
    in the database's time zone)."""
    try:
        moment = datetime.fromisoformat(key)
        if moment.tzinfo is None:
            raise ValueError(key)
        return moment
    except (TypeError, ValueError):
        raise ValidationFailed(
            "Invalid cursor.",
            details=[{"loc": ["query", "cursor"], "msg": "Invalid cursor.", "type": "value_error"}],
        ) from None
