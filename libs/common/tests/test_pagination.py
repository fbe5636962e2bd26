import uuid
from datetime import UTC, datetime

import pytest

from milepost_common.errors import ValidationFailed
from milepost_common.pagination import cursor_time, decode_cursor, encode_cursor


def test_cursor_round_trips() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    item = uuid.uuid4()
    key, item_id = decode_cursor(encode_cursor(when, item))
    assert cursor_time(key) == when
    assert item_id == item


@pytest.mark.parametrize("garbage", ["", "abc", "!!!", "W10", "WyJ4Il0"])
def test_garbage_cursor_is_422(garbage: str) -> None:
    with pytest.raises(ValidationFailed):
        decode_cursor(garbage)


def test_cursor_with_a_bad_time_is_422() -> None:
    key, _ = decode_cursor(encode_cursor("not-a-time", uuid.uuid4()))
    with pytest.raises(ValidationFailed):
        cursor_time(key)
