"""The OsmAnd protocol (Traccar Client apps and many trackers) decoded into a batch item.

Pure functions over plain data, no I/O. Three encodings: parameters in the query string
(GET or POST) or a form body, both handled by :func:`decode_params`, and the JSON body of
the current Traccar Client (:func:`decode_json`). The result is an item shaped like one of
``POST /ingest/v1/positions``, checked by the same validation: a value that cannot be
read is passed on as sent, so the fix is recorded as rejected (``invalid_field``) rather
than refused. Only a missing device id fails the request (a phone cannot fix that by
retrying, and nothing could be recorded without it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from milepost_common.errors import BadRequest, MalformedBody

KNOTS_TO_KMH = 1.852
MPS_TO_KMH = 3.6
MILLISECONDS_FROM = 2**31  # Unix timestamps at or above this are milliseconds
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_SPEED_DIGITS = 6
_OFFSET = re.compile(r"\d{2}(:?\d{2})?")


class DeviceIdMissing(BadRequest):
    default_message = "The device id (`id` or `deviceid`) is required."


class DeviceUnknown(BadRequest):
    """A form or query-string fix of a device the key's organization does not have (the
    Traccar Client's JSON body gets the domain's DeviceNotFound, 404, instead)."""

    default_message = "Unknown device."


@dataclass(frozen=True, slots=True)
class OsmandFix:
    """One decoded fix: ``item`` has the batch item shape; ``json_form`` tells how an
    unknown device is answered (404 for the JSON body, 400 for parameters)."""

    item: dict[str, Any]
    json_form: bool

    @property
    def unique_id(self) -> str:
        unique_id: str = self.item["device_id"]
        return unique_id


def parse_number(text: str) -> int | float | None:
    """A decimal number as an ``int`` when written without a fraction or exponent, else a
    ``float``; None for anything else (hex, ``nan``, ``inf``, words, a number no double
    holds)."""
    value = text.strip()
    if _INTEGER.fullmatch(value):
        try:
            integer = int(value)
            float(integer)  # lat, speed, … are read as doubles; one too large is text
        except (ValueError, OverflowError):  # over int()'s 4,300 digits, or beyond a double
            return None
        return integer
    if _DECIMAL.fullmatch(value):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def _number_or_raw(text: str | None) -> Any:
    """A number, None when absent or empty, else the text as sent (rejected later)."""
    if text is None or not text.strip():
        return None
    number = parse_number(text)
    return text if number is None else float(number)


def _scaled(value: Any, factor: float) -> Any:
    """A speed converted to km/h; negative means unknown (None); non-numbers pass as sent."""
    if type(value) not in (int, float):
        return value
    return None if value < 0 else round(value * factor, _SPEED_DIGITS)


def _course(value: Any) -> Any:
    if type(value) not in (int, float):
        return value
    return None if value < 0 else float(value)


# The integers JSON writers and readers keep exactly (orjson refuses any other).
_INT64 = range(-(2**63), 2**63)


def _typed(text: str) -> Any:
    """Any other parameter: a number, a boolean (``true``/``false``) or the text (an integer
    beyond 64 bits too, such as a SIM card's 20-digit ICCID)."""
    if text in ("true", "false"):
        return text == "true"
    number = parse_number(text)
    return text if number is None or (type(number) is int and number not in _INT64) else number


def _from_epoch(amount: Decimal) -> datetime:
    if amount >= MILLISECONDS_FROM:
        return _EPOCH + timedelta(milliseconds=float(amount))
    return _EPOCH + timedelta(microseconds=int(amount * 1_000_000))


def _iso(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        # A "+02:00" offset sent unencoded in a query string arrives as " 02:00".
        head, space, offset = text.rpartition(" ")
        if space and _OFFSET.fullmatch(offset):
            return datetime.fromisoformat(f"{head}+{offset}")
        raise


def parse_timestamp(value: Any) -> Any:
    """Unix seconds, Unix milliseconds (values ≥ 2^31), ISO 8601, or ``yyyy-MM-dd HH:mm:ss``
    (times without an offset are UTC). What cannot be read is returned as sent."""
    try:
        if type(value) in (int, float):
            return _from_epoch(Decimal(str(value)))
        if type(value) is not str:
            return value
        text = value.strip()
        if _DECIMAL.fullmatch(text) and "e" not in text.lower():
            return _from_epoch(Decimal(text))
        parsed = _iso(text)
    except (ValueError, OverflowError, InvalidOperation):
        return value
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def decode_params(params: Iterable[tuple[str, str]], received_at: datetime) -> OsmandFix:
    """Query string and form parameters (the last of a repeated name wins). Raises
    DeviceIdMissing."""
    values = dict(params)
    unique_id = values.pop("id", None)
    device_id = values.pop("deviceid", None)
    unique_id = (unique_id or device_id or "").strip()
    if not unique_id:
        raise DeviceIdMissing()
    timestamp = values.pop("timestamp", None)
    lat, lon = values.pop("lat", None), values.pop("lon", None)
    location = values.pop("location", None)
    if location is not None and lat is None and lon is None:
        lat, _, lon = location.partition(",")
    speed = _number_or_raw(values.pop("speed", None))
    bearing, heading = values.pop("bearing", None), values.pop("heading", None)
    course = _number_or_raw(bearing if bearing is not None else heading)
    item: dict[str, Any] = {
        "device_id": unique_id,
        "fix_time": received_at if timestamp is None else parse_timestamp(timestamp),
        "lat": _number_or_raw(lat),
        "lon": _number_or_raw(lon),
        "speed": _scaled(speed, KNOTS_TO_KMH),
        "course": _course(course),
        "altitude": _number_or_raw(values.pop("altitude", None)),
        "accuracy": _number_or_raw(values.pop("accuracy", None)),
    }
    attributes: dict[str, Any] = {}
    renamed = {"hdop": "hdop", "batt": "battery", "driverUniqueId": "driver_unique_id"}
    for name, text in values.items():
        if name in renamed:
            if name == "driverUniqueId":
                attributes[renamed[name]] = text
            elif text.strip():
                attributes[renamed[name]] = _number_or_raw(text)
        else:
            attributes[name] = _typed(text)
    item["attributes"] = attributes
    return OsmandFix(item, json_form=False)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def decode_json(document: Any, received_at: datetime) -> OsmandFix:
    """The Traccar Client JSON body: ``{"location": {...}, "device_id": "..."}``. Raises
    MalformedBody for another shape and DeviceIdMissing."""
    if not isinstance(document, Mapping) or not isinstance(document.get("location", {}), Mapping):
        raise MalformedBody("Expected a JSON object with `location` and `device_id`.")
    raw_id = document.get("device_id")
    if type(raw_id) in (int, float):
        raw_id = str(raw_id)
    unique_id = raw_id.strip() if isinstance(raw_id, str) else ""
    if not unique_id:
        raise DeviceIdMissing("The device id (`device_id`) is required.")
    location = _mapping(document.get("location"))
    coords = _mapping(location.get("coords"))
    timestamp = location.get("timestamp")
    attributes: dict[str, Any] = dict(_mapping(location.get("extras")))
    if "is_moving" in location:
        attributes["motion"] = location["is_moving"]
    for name in ("odometer", "event"):
        if name in location:
            attributes[name] = location[name]
    activity = _mapping(location.get("activity"))
    if "type" in activity:
        attributes["activity"] = activity["type"]
    battery = _mapping(location.get("battery"))
    level = battery.get("level")
    if isinstance(level, int | float) and not isinstance(level, bool) and level >= 0:
        attributes["battery"] = round(level * 100, 2)
    if "is_charging" in battery:
        attributes["charge"] = battery["is_charging"]
    item: dict[str, Any] = {
        "device_id": unique_id,
        "fix_time": received_at if timestamp is None else parse_timestamp(timestamp),
        "lat": coords.get("latitude"),
        "lon": coords.get("longitude"),
        "speed": _scaled(coords.get("speed"), MPS_TO_KMH),
        "course": _course(coords.get("heading")),
        "altitude": coords.get("altitude"),
        "accuracy": coords.get("accuracy"),
        "attributes": attributes,
    }
    return OsmandFix(item, json_form=True)
