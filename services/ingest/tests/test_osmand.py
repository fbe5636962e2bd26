"""The pure OsmAnd decoder: the issue's example requests to the exact values, every parameter
rule, and properties over generated values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from milepost_common.errors import MalformedBody
from milepost_ingest.osmand import (
    KNOTS_TO_KMH,
    MILLISECONDS_FROM,
    DeviceIdMissing,
    decode_json,
    decode_params,
    parse_number,
    parse_timestamp,
)

RECEIVED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
RESERVED = {
    "id", "deviceid", "timestamp", "lat", "lon", "location", "speed", "bearing", "heading",
    "altitude", "accuracy", "hdop", "batt", "driverUniqueId",
}  # fmt: skip
TRACCAR_JSON = (
    '{"location":{"timestamp":"2025-06-15T13:45:12.862Z","coords":{"latitude":37.4219983,'
    '"longitude":-122.084,"accuracy":5,"speed":0,"heading":-1,"altitude":5},"is_moving":false,'
    '"odometer":0,"event":"motionchange","battery":{"level":1,"is_charging":false},'
    '"activity":{"type":"still"},"extras":{}},"device_id":"48241179"}'
)


def query(text: str) -> dict[str, Any]:
    return decode_params(parse_qsl(text, keep_blank_values=True), RECEIVED).item


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


class TestIssueExamples:
    def test_iso_timestamp_with_hdop_altitude_speed(self) -> None:
        item = query(
            "id=902064&lat=42.06288&lon=-88.23412&timestamp=2016-01-27T18%3A55%3A47Z"
            "&hdop=6.0&altitude=224.0&speed=0.0"
        )
        assert item == {
            "device_id": "902064",
            "fix_time": utc(2016, 1, 27, 18, 55, 47),
            "lat": 42.06288,
            "lon": -88.23412,
            "speed": 0.0,
            "course": None,
            "altitude": 224.0,
            "accuracy": None,
            "attributes": {"hdop": 6.0},
        }

    def test_millisecond_timestamp(self) -> None:
        item = query(
            "id=902064&lat=42.06288&lon=-88.23412&timestamp=1442068686579&hdop=6.0"
            "&altitude=224.0&speed=0.0"
        )
        assert item["fix_time"] == datetime(2015, 9, 12, 14, 38, 6, 579000, tzinfo=UTC)
        assert item["fix_time"].isoformat() == "2015-09-12T14:38:06.579000+00:00"

    def test_location_parameter(self) -> None:
        item = query("id=123456&timestamp=1377177267&location=60.0,30.0")
        assert (item["device_id"], item["lat"], item["lon"]) == ("123456", 60.0, 30.0)
        assert item["fix_time"] == utc(2013, 8, 22, 13, 14, 27)
        assert item["attributes"] == {}

    def test_knots_bearing_and_typed_attributes(self) -> None:
        item = query(
            "id=123456789012345&timestamp=1504763810&lat=40.7232948571&lon=-74.0061408571"
            "&bearing=7.19889788244&speed=40&ignition=true&rpm=933&fuel=24"
        )
        assert item == {
            "device_id": "123456789012345",
            "fix_time": utc(2017, 9, 7, 5, 56, 50),
            "lat": 40.7232948571,
            "lon": -74.0061408571,
            "speed": 74.08,
            "course": 7.19889788244,
            "altitude": None,
            "accuracy": None,
            "attributes": {"ignition": True, "rpm": 933, "fuel": 24},
        }
        assert type(item["attributes"]["rpm"]) is int

    def test_traccar_client_json_body(self) -> None:
        fix = decode_json(orjson.loads(TRACCAR_JSON), RECEIVED)
        assert fix.json_form
        assert fix.item == {
            "device_id": "48241179",
            "fix_time": datetime(2025, 6, 15, 13, 45, 12, 862000, tzinfo=UTC),
            "lat": 37.4219983,
            "lon": -122.084,
            "speed": 0.0,
            "course": None,
            "altitude": 5,
            "accuracy": 5,
            "attributes": {
                "motion": False,
                "odometer": 0,
                "event": "motionchange",
                "activity": "still",
                "battery": 100,
                "charge": False,
            },
        }


class TestParameters:
    def test_deviceid_is_an_alias_of_id(self) -> None:
        assert query("deviceid=abc&lat=1&lon=2")["device_id"] == "abc"

    @pytest.mark.parametrize("text", ["lat=1&lon=2", "id=&lat=1", "id=%20%20"])
    def test_missing_id_fails_the_request(self, text: str) -> None:
        with pytest.raises(DeviceIdMissing):
            query(text)

    def test_missing_timestamp_is_the_receive_time(self) -> None:
        assert query("id=a&lat=1&lon=2")["fix_time"] == RECEIVED

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2016-01-27 18:55:47", utc(2016, 1, 27, 18, 55, 47)),
            ("2016-01-27T18:55:47", utc(2016, 1, 27, 18, 55, 47)),
            ("2016-01-27T20:55:47+02:00", utc(2016, 1, 27, 18, 55, 47)),
            ("1453920947", utc(2016, 1, 27, 18, 55, 47)),
            ("1453920947.25", datetime(2016, 1, 27, 18, 55, 47, 250000, tzinfo=UTC)),
            ("1453920947000", utc(2016, 1, 27, 18, 55, 47)),
            (str(MILLISECONDS_FROM - 1), utc(2038, 1, 19, 3, 14, 7)),
        ],
    )
    def test_timestamp_forms(self, text: str, expected: datetime) -> None:
        assert query(urlencode({"id": "a", "timestamp": text}))["fix_time"] == expected

    def test_an_unencoded_plus_of_an_offset_is_understood(self) -> None:
        item = query("id=a&timestamp=2016-01-27T20:55:47+02:00")
        assert item["fix_time"] == utc(2016, 1, 27, 18, 55, 47)

    def test_unreadable_values_pass_as_sent_for_validation_to_reject(self) -> None:
        item = query("id=a&lat=north&lon=2&timestamp=yesterday&speed=fast")
        assert (item["lat"], item["fix_time"], item["speed"]) == ("north", "yesterday", "fast")

    def test_a_number_no_double_holds_passes_as_sent(self) -> None:
        huge, endless = "1" + "0" * 400, "9" * 5000  # beyond a double; beyond int()'s limit
        item = query(f"id=a&lat={huge}&lon=2&speed={endless}&odo={endless}")
        assert (item["lat"], item["speed"]) == (huge, endless)
        assert item["attributes"] == {"odo": endless}

    def test_heading_is_an_alias_of_bearing_and_negative_means_unknown(self) -> None:
        assert query("id=a&heading=270")["course"] == 270.0
        assert query("id=a&bearing=-1&speed=-1")["course"] is None
        assert query("id=a&speed=-1")["speed"] is None

    def test_empty_values_are_absent(self) -> None:
        item = query("id=a&speed=&altitude=&accuracy=")
        assert (item["speed"], item["altitude"], item["accuracy"]) == (None, None, None)

    def test_known_attribute_parameters(self) -> None:
        item = query("id=a&batt=87.5&charge=true&driverUniqueId=0042&hdop=1.2&accuracy=8")
        assert item["attributes"] == {
            "battery": 87.5,
            "charge": True,
            "driver_unique_id": "0042",
            "hdop": 1.2,
        }
        assert item["accuracy"] == 8.0

    def test_lat_and_lon_win_over_location(self) -> None:
        item = query("id=a&lat=1&lon=2&location=3,4")
        assert (item["lat"], item["lon"]) == (1.0, 2.0)

    def test_other_parameters_are_typed_attributes(self) -> None:
        attributes = query("id=a&valid=false&temp=-3.5&name=van&code=0x1F&n=nan")["attributes"]
        assert attributes == {
            "valid": False,
            "temp": -3.5,
            "name": "van",
            "code": "0x1F",
            "n": "nan",
        }


class TestJsonBody:
    def test_speed_is_meters_per_second_and_battery_a_fraction(self) -> None:
        document = {
            "device_id": 77,
            "location": {
                "timestamp": 1453920947,
                "coords": {"latitude": 1.5, "longitude": 2.5, "speed": 10, "heading": 90},
                "battery": {"level": 0.57, "is_charging": True},
                "extras": {"trip": "A-7", "load": 1.5, "doors": {"rear": True}},
            },
        }
        item = decode_json(document, RECEIVED).item
        assert (item["device_id"], item["speed"], item["course"]) == ("77", 36.0, 90.0)
        assert item["fix_time"] == utc(2016, 1, 27, 18, 55, 47)
        assert item["attributes"] == {
            "trip": "A-7",
            "load": 1.5,
            "doors": {"rear": True},
            "battery": 57.0,
            "charge": True,
        }

    def test_negative_battery_level_is_absent(self) -> None:
        document = {"device_id": "a", "location": {"battery": {"level": -1}}}
        assert "battery" not in decode_json(document, RECEIVED).item["attributes"]

    def test_missing_timestamp_is_the_receive_time(self) -> None:
        item = decode_json({"device_id": "a", "location": {}}, RECEIVED).item
        assert item["fix_time"] == RECEIVED

    @pytest.mark.parametrize("document", [{"location": {}}, {"device_id": "", "location": {}}])
    def test_missing_device_id_fails_the_request(self, document: dict[str, Any]) -> None:
        with pytest.raises(DeviceIdMissing):
            decode_json(document, RECEIVED)

    @pytest.mark.parametrize("document", [[1], "x", {"device_id": "a", "location": [1]}])
    def test_another_shape_is_malformed(self, document: Any) -> None:
        with pytest.raises(MalformedBody):
            decode_json(document, RECEIVED)


finite = st.floats(allow_nan=False, allow_infinity=False)
EARLIEST = datetime(1971, 1, 1)  # noqa: DTZ001 - hypothesis bounds are naive
names = st.text(
    alphabet=st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12
).filter(lambda name: name not in RESERVED)


class TestProperties:
    @given(lat=st.floats(-90, 90), lon=st.floats(-180, 180), seconds=st.integers(0, 2**31 - 1))
    def test_coordinates_and_unix_seconds_round_trip(
        self, lat: float, lon: float, seconds: int
    ) -> None:
        item = query(
            urlencode({"id": "a", "lat": repr(lat), "lon": repr(lon), "timestamp": seconds})
        )
        assert (item["lat"], item["lon"]) == (lat, lon)
        assert item["fix_time"] == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)

    @given(seconds=st.integers(MILLISECONDS_FROM // 1000 + 1, MILLISECONDS_FROM - 1))
    def test_milliseconds_and_seconds_agree(self, seconds: int) -> None:
        assert parse_timestamp(str(seconds * 1000)) == parse_timestamp(str(seconds))

    @given(moment=st.datetimes(min_value=EARLIEST, timezones=st.just(UTC)))
    def test_iso_8601_round_trips(self, moment: datetime) -> None:
        assert parse_timestamp(moment.isoformat()) == moment

    @given(knots=st.floats(0, 1e6))
    def test_knots_become_kmh(self, knots: float) -> None:
        speed = query(urlencode({"id": "a", "speed": repr(knots)}))["speed"]
        assert speed == pytest.approx(knots * KNOTS_TO_KMH, rel=1e-9, abs=1e-6)

    @given(name=names, value=st.one_of(st.integers(-(10**12), 10**12), st.booleans(), finite))
    def test_other_parameters_keep_their_type(self, name: str, value: int | bool | float) -> None:
        text = str(value).lower() if isinstance(value, bool) else repr(value)
        attributes = query(urlencode({"id": "a", name: text}))["attributes"]
        assert attributes == {name: value}
        assert type(attributes[name]) is type(value)

    @given(text=st.text(max_size=20))
    def test_parse_number_never_raises_and_is_finite(self, text: str) -> None:
        number = parse_number(text)
        assert number is None or number == number  # not NaN

    @given(params=st.lists(st.tuples(st.text(max_size=10), st.text(max_size=20)), max_size=12))
    def test_any_parameters_decode_or_miss_the_id(self, params: list[tuple[str, str]]) -> None:
        try:
            fix = decode_params([("id", "dev"), *params], RECEIVED)
        except DeviceIdMissing:
            return
        orjson.dumps(fix.item)  # always storable as a rejected item
