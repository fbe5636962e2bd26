"""The one-pass check of batch items (pure): one code per rejected item, rows in order, and
``stored + rejected`` always the number of items."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from milepost_common.domain.ingest_batches.validation import (
    DeviceRef,
    FastFix,
    FixPolicy,
    Unparseable,
    build_policy,
    check_items,
    decode_item,
    named_devices,
    without_lone_surrogates,
)
from milepost_common.domain.positions.service import StorableWindow

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
KNOWN = DeviceRef(uuid.uuid4(), disabled=False)
DISABLED = DeviceRef(uuid.uuid4(), disabled=True)


def policy(**changes: Any) -> FixPolicy:
    values: dict[str, Any] = {
        "retention_days": 30,
        "max_clock_skew_s": 300,
        "max_speed_kmh": 250.0,
        "window": StorableWindow(NOW - timedelta(days=10), NOW + timedelta(days=2)),
        "devices": {"known": KNOWN, "off": DISABLED},
        **changes,
    }
    return build_policy(NOW, **values)


def item(**fields: Any) -> dict[str, Any]:
    return {
        "device_id": "known",
        "fix_time": "2026-06-01T11:00:00Z",
        "lat": 48.1,
        "lon": 11.5,
        **fields,
    }


def code_of(one: Any, rules: FixPolicy | None = None) -> str | None:
    checked = check_items([one], rules or policy())
    return checked.errors[0]["code"] if checked.errors else None


class TestCodes:
    def test_a_minimal_item_is_stored(self) -> None:
        checked = check_items([item()], policy())
        assert checked.errors == []
        [row] = checked.rows.rows
        fix_time = datetime(2026, 6, 1, 11, tzinfo=UTC)
        assert row[:8] == (KNOWN.id, fix_time, 48.1, 11.5, None, None, None, None)
        assert checked.rows.to_json().endswith(",null,null,null,null,{}]]")

    def test_invalid_fields(self) -> None:
        for bad in (
            item(fix_time=None), item(fix_time="yesterday"), item(fix_time="2026-06-01T11:00:00"),
            item(fix_time=1780000000), item(lat=None), item(lon="11.5"), item(lat=True),
            item(speed=-0.1), item(course=360.5), item(accuracy=-1), item(altitude="high"),
            item(device_id=7), item(device_id="x" * 129), item(device_id="a\x00b"),
            item(attributes="ignition"), item(attributes={"battery": "full"}),
            item(attributes={"motion": 1}), item(attributes={"x": "a\x00"}),
            item(attributes={"big": "x" * 9000}), [1, 2], None, Unparseable("{oops"),
        ):  # fmt: skip
            assert code_of(bad) == "invalid_field", bad

    def test_coordinates(self) -> None:
        for lat, lon in ((90.01, 0), (-90.5, 1), (1, 180.5), (1, -181), (0.0, 0.0), (0, 0)):
            assert code_of(item(lat=lat, lon=lon)) == "invalid_coordinates"
        assert code_of(item(lat=0.0, lon=0.001)) is None
        assert code_of(item(lat=-90, lon=180)) is None

    def test_clock_skew_and_retention(self) -> None:
        assert code_of(item(fix_time="2026-06-01T12:05:00Z")) is None
        assert code_of(item(fix_time="2026-06-01T12:05:01Z")) == "fix_time_in_future"
        assert code_of(item(fix_time="2026-05-22T12:00:00Z")) is None
        assert code_of(item(fix_time="2026-05-22T11:59:59Z")) == "fix_time_too_old"

    def test_the_partition_window_narrows_both_bounds(self) -> None:
        rules = policy(
            max_clock_skew_s=10 * 86400,
            window=StorableWindow(NOW - timedelta(days=1), NOW + timedelta(hours=1)),
        )
        assert code_of(item(fix_time="2026-05-31T11:59:59Z"), rules) == "fix_time_too_old"
        assert code_of(item(fix_time="2026-06-01T13:00:00Z"), rules) == "fix_time_in_future"
        assert code_of(item(fix_time="2026-06-01T12:59:59Z"), rules) is None

    def test_no_partition_at_all_stores_nothing(self) -> None:
        assert code_of(item(), policy(window=None)) == "fix_time_too_old"

    def test_speed_and_device(self) -> None:
        assert code_of(item(speed=250.0)) is None
        assert code_of(item(speed=250.5)) == "implausible_speed"
        assert code_of(item(device_id="stranger")) == "unknown_device"
        assert check_items([item(device_id="off")], policy()).errors[0]["message"] == (
            "The device is disabled."
        )

    def test_the_first_code_that_applies_wins(self) -> None:
        assert code_of(item(device_id="stranger", lat=95.0)) == "invalid_coordinates"
        assert code_of(item(speed=900.0, fix_time="2030-01-01T00:00:00Z")) == "fix_time_in_future"

    def test_known_attributes_keep_their_types_others_anything(self) -> None:
        attributes = {"battery": 55, "ignition": True, "odometer": 1.5e6, "alarm": "sos",
                      "custom": {"nested": [1, "two"]}, "motion": None}  # fmt: skip
        checked = check_items([item(attributes=attributes)], policy())
        assert checked.errors == []
        assert orjson.loads(checked.rows.to_json())[0][8] == attributes

    def test_rejected_items_are_kept_as_sent(self) -> None:
        checked = check_items([item(), "junk", Unparseable("{x")], policy())
        assert checked.rejected_items == [
            {"index": 1, "code": "invalid_field", "item": "junk"},
            {"index": 2, "code": "invalid_field", "item": "{x"},
        ]

    def test_named_devices_skips_what_cannot_be_a_device(self) -> None:
        items = [item(), item(device_id="b"), item(device_id=5), "x", item(device_id="")]
        assert named_devices(items) == {"known", "b"}


json_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=5)
any_item = st.one_of(
    st.builds(
        item,
        device_id=st.sampled_from(["known", "off", "stranger", "", 3]),
        fix_time=st.sampled_from(
            ["2026-06-01T11:00:00Z", "2026-06-03T00:00:00Z", "2020-01-01T00:00:00Z", "nope"]
        ),
        lat=st.one_of(st.floats(-100, 100), st.none(), json_text),
        lon=st.floats(-200, 200, allow_nan=False),
        speed=st.one_of(st.none(), st.floats(-10, 600, allow_nan=False)),
        course=st.sampled_from([None, 10, 359.5, 400, -1, True]),
        altitude=st.sampled_from([None, 3, -12.5, "high"]),
        accuracy=st.sampled_from([None, 0, 5.5, -1]),
        attributes=st.sampled_from(
            [
                None,
                {},
                {"battery": 50},
                {"battery": "x"},
                [],
                "x",
                {"ignition": True, "odometer": None, "x": [1, {"y": "z"}]},
                {"alarm": 1},
            ]
        ),
    ),
    st.integers(-(2**63), 2**63 - 1),
    json_text,
)


def both_paths(items: list[Any]) -> tuple[Any, Any]:
    """The items checked as parsed dicts, and as the app decodes them (FastFix first)."""
    raws = [orjson.dumps(one) for one in items]
    general = check_items(items, policy())
    fast = check_items([decode_item(raw) for raw in raws], policy(), raws)
    return general, fast


class TestFastPath:
    def test_a_well_formed_item_is_decoded_in_c(self) -> None:
        assert isinstance(decode_item(orjson.dumps(item(speed=3, attributes={"a": 1}))), FastFix)
        assert isinstance(decode_item(b'{"device_id": "x"}'), dict)
        assert isinstance(decode_item(b"{nope"), Unparseable)

    def test_rejected_fast_items_are_kept_as_sent(self) -> None:
        sent = item(device_id="stranger", extra={"kept": True}, speed=None)
        _, fast = both_paths([sent])
        assert fast.rejected_items == [{"index": 0, "code": "unknown_device", "item": sent}]

    def test_unusual_attributes_take_the_general_check(self) -> None:
        for attributes, code in (
            ({"battery": "full"}, "invalid_field"),
            ({"x": "a\u0000b"}, "invalid_field"),
            ({"x": "caf\u00e9"}, None),
            ({"x": "x" * 9000}, "invalid_field"),
        ):
            general, fast = both_paths([item(attributes=attributes)])
            assert general.errors == fast.errors
            assert [e["code"] for e in fast.errors] == ([code] if code else [])
            assert general.rows.to_json() == fast.rows.to_json().replace('"caf\u00e9"', '"café"')


class TestProperties:
    @given(items=st.lists(any_item, max_size=40))
    def test_every_item_is_either_a_row_or_one_error(self, items: list[Any]) -> None:
        checked = check_items(items, policy())
        indexes = [e["index"] for e in checked.errors]
        assert indexes == sorted(set(indexes))
        assert checked.valid + checked.rejected == checked.total == len(items)
        assert len(checked.rejected_items) == checked.rejected
        assert all(len(row) == 9 for row in checked.rows.rows)

    @given(items=st.lists(any_item, max_size=30))
    def test_the_fast_and_the_general_path_agree(self, items: list[Any]) -> None:
        general, fast = both_paths(items)
        assert fast.errors == general.errors
        assert fast.rejected_items == general.rejected_items
        assert orjson.loads(fast.rows.to_json()) == orjson.loads(general.rows.to_json())


# Characters as Python holds them, lone surrogates and backslashes among them.
_TEXT = st.lists(
    st.characters() | st.sampled_from(["\ud83d", "\ude00", "\\", "u", "d800", "\ufffd"])
).map("".join)


class TestLoneSurrogates:
    @given(text=_TEXT)
    def test_the_json_of_any_text_reads_as_its_utf16_with_replacements(self, text: str) -> None:
        # json.dumps escapes every non-ASCII code unit (\uXXXX) and every backslash.
        written = json.dumps({"note": text}).encode()
        expected = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")

        assert orjson.loads(without_lone_surrogates(written)) == {"note": expected}

    def test_text_without_a_lone_one_is_left_as_it_is(self) -> None:
        for text in (b'"\\ud83d\\ude00"', b'"\\\\ud800"', b'"plain"', b'"\\u00e9"'):
            assert without_lone_surrogates(text) == text
