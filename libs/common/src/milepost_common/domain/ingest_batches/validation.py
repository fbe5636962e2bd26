"""Every item of a batch checked in one pass: stored as a row, or rejected with one code.

Pure (no I/O): the caller hands in a :class:`FixPolicy` carrying the organization's
filters, the window of fix times the ``positions`` partitions can take, and the devices of
the organization that the batch names. An item gets the first code that applies, in the
order ``invalid_field``, ``invalid_coordinates``, ``fix_time_in_future``,
``fix_time_too_old``, ``implausible_speed``, ``unknown_device``, ``before_transfer``: what
is wrong with the fix itself comes before whom it belongs to. A disabled device counts as
``unknown_device``: its fixes are refused until it is enabled again (and can then be
replayed). A fix older than the device's tenure in the organization (``before_transfer``)
belongs to the organization that had it then, and is never stored for this one.

Well-formed items (the common case) are decoded and type-checked by msgspec in C
(:func:`decode_item` → :class:`FastFix`); any other item is checked field by field in
Python, which names the field at fault. Both end in the same checks of values.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from math import isfinite
from typing import Annotated, Any

import msgspec
import orjson

from milepost_common.domain.ingest_batches.schemas import ItemCode
from milepost_common.domain.positions import service as position_service

MAX_UNIQUE_ID_LENGTH = 128
MAX_ATTRIBUTES_BYTES = 8192
_EMPTY_ATTRIBUTES = orjson.Fragment(b"{}")
_MINUTE = timedelta(minutes=1)
_NUMBER = (int, float)
# Known attribute keys (DESIGN.md) and the JSON types the worker relies on.
KNOWN_ATTRIBUTES: dict[str, tuple[type, ...]] = {
    "battery": _NUMBER,
    "ignition": (bool,),
    "charge": (bool,),
    "motion": (bool,),
    "odometer": _NUMBER,
    "hdop": _NUMBER,
    "driver_unique_id": (str,),
    "alarm": (str,),
}
_KNOWN_NAMES = frozenset(KNOWN_ATTRIBUTES)
_TYPE_NAMES: dict[tuple[type, ...], str] = {
    _NUMBER: "a number",
    (bool,): "a boolean",
    (str,): "a string",
}


@dataclass(frozen=True, slots=True)
class DeviceRef:
    id: uuid.UUID
    disabled: bool
    # The current organization's tenure starts here (None: since registration); an older
    # fix belongs to an earlier organization's timeline and is refused.
    since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Unparseable:
    """An item (an NDJSON line) that is not JSON: rejected as ``invalid_field``, kept as sent."""

    text: str


class FastFix(msgspec.Struct, frozen=True, gc=False):
    """A well-formed item, its types and ranges checked while decoding."""

    device_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_UNIQUE_ID_LENGTH)]
    fix_time: Annotated[datetime, msgspec.Meta(tz=True)]
    lat: float
    lon: float
    speed: Annotated[float, msgspec.Meta(ge=0)] | None = None
    course: Annotated[float, msgspec.Meta(ge=0, le=360)] | None = None
    altitude: float | None = None
    accuracy: Annotated[float, msgspec.Meta(ge=0)] | None = None
    attributes: msgspec.Raw = msgspec.Raw()


class _KnownAttributes(msgspec.Struct):
    """The types of KNOWN_ATTRIBUTES; other keys are skipped."""

    battery: float | None = None
    ignition: bool | None = None
    charge: bool | None = None
    motion: bool | None = None
    odometer: float | None = None
    hdop: float | None = None
    driver_unique_id: str | None = None
    alarm: str | None = None


_FAST = msgspec.json.Decoder(FastFix)
_KNOWN = msgspec.json.Decoder(_KnownAttributes)


def decode_item(raw: Any) -> Any:
    """One item's JSON (bytes-like): a FastFix when well-formed, else its JSON value, else
    Unparseable. The caller has checked that the bytes are UTF-8."""
    try:
        return _FAST.decode(raw)
    # Malformed, (ValidationError) not a well-formed fix, or nested too deep for msgspec,
    # which orjson then refuses with its own error.
    except (msgspec.DecodeError, RecursionError):
        pass
    try:
        return orjson.loads(memoryview(raw))
    except orjson.JSONDecodeError:
        repaired = without_lone_surrogates(raw)
        if repaired != raw:
            return decode_item(repaired)
        return Unparseable(bytes(raw).decode("utf-8", "replace").strip())


# An escape in JSON text, matched from its backslash: a surrogate pair, a lone surrogate, any
# other \u escape or any other escaped character (so an escaped backslash followed by
# "ud800" is text, not an escape).
_ESCAPE = re.compile(
    rb"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb"|u[dD][89a-fA-F][0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)",
    re.DOTALL,
)
_REPLACEMENT = rb"\ufffd"


def _lone_as_replacement(match: re.Match[bytes]) -> bytes:
    escape = match.group()
    if len(escape) == 6 and escape[2] in b"dD" and escape[3] in b"89abcdefABCDEF":
        return _REPLACEMENT
    return escape


def without_lone_surrogates(data: Any) -> bytes:
    """JSON text (bytes-like) with each lone UTF-16 surrogate escape (``\\ud83d`` cut from
    its pair, as a truncated emoji leaves it) written as U+FFFD, the replacement character.
    No Unicode string holds one: the JSON parsers refuse the document it is in, and Postgres
    any text or jsonb with it; a UTF-8 decoder reads a broken sequence the same way."""
    data = bytes(data)
    return _ESCAPE.sub(_lone_as_replacement, data) if b"\\u" in data else data


@dataclass(frozen=True, slots=True)
class FixPolicy:
    """What a fix must satisfy to be stored; both time bounds are inclusive."""

    oldest: datetime
    newest: datetime
    max_speed_kmh: float
    devices: Mapping[str, DeviceRef]
    too_old_message: str
    in_future_message: str


def build_policy(
    now: datetime,
    *,
    retention_days: int,
    max_clock_skew_s: int,
    max_speed_kmh: float,
    window: position_service.StorableWindow | None,
    devices: Mapping[str, DeviceRef],
) -> FixPolicy:
    """Bounds from the retention and the clock skew, narrowed to the storable window."""
    oldest = now - timedelta(days=retention_days)
    newest = now + timedelta(seconds=max_clock_skew_s)
    if window is None:  # no partition at all: nothing can be stored
        oldest = datetime.max.replace(tzinfo=UTC)
    else:
        oldest = max(oldest, window.start)
        newest = min(newest, window.end - timedelta(microseconds=1))
    return FixPolicy(
        oldest=oldest,
        newest=newest,
        max_speed_kmh=max_speed_kmh,
        devices=devices,
        too_old_message=f"fix_time is older than {_iso(oldest)}, the oldest time stored.",
        in_future_message=f"fix_time is later than {_iso(newest)}, beyond the allowed clock skew.",
    )


@dataclass(slots=True)
class CheckedItems:
    """The outcome of the pass: rows to store, and each rejected item with its code."""

    total: int = 0
    rows: position_service.NewPositions = field(default_factory=position_service.NewPositions)
    errors: list[dict[str, Any]] = field(default_factory=list)
    rejected_items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len(self.errors)

    @property
    def valid(self) -> int:
        return len(self.rows)

    def reject(self, index: int, item: Any, code: ItemCode, message: str, raw: Any = None) -> None:
        self.errors.append({"index": index, "code": code.value, "message": message})
        if isinstance(item, Unparseable):
            stored = item.text
        elif isinstance(item, FastFix):  # kept as sent, not as decoded
            stored = _as_sent(raw) if raw is not None else msgspec.to_builtins(item)
        else:
            stored = item
        self.rejected_items.append({"index": index, "code": code.value, "item": stored})


def _as_sent(raw: Any) -> Any:
    """An item's JSON as its value, or as its text when a double cannot hold one of its
    numbers (as an unparseable item is kept)."""
    try:
        return orjson.loads(memoryview(raw))
    except orjson.JSONDecodeError:
        return bytes(raw).decode("utf-8", "replace")


class _Rejected(Exception):
    def __init__(self, code: ItemCode, message: str) -> None:
        self.code = code
        self.message = message


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _invalid(message: str) -> _Rejected:
    return _Rejected(ItemCode.INVALID_FIELD, message)


def _number(value: Any, name: str) -> float | None:
    kind = type(value)
    if kind is float:
        if not isfinite(value):  # orjson never yields inf or NaN; other decoders might
            raise _invalid(f"{name} must be a finite number.")
        return float(value)
    if kind is int:
        return float(value)
    if value is None:
        return None
    raise _invalid(f"{name} must be a number.")


def _fix_time(value: Any) -> datetime:
    if type(value) is str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
    elif type(value) is datetime:
        parsed = value
    else:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise _invalid("fix_time must be an ISO 8601 time with a UTC offset.")
    # Python reads an offset with seconds (+05:00:30) that ISO 8601 has not; the time would
    # be stored with the offset rounded to the minute, up to 30 s from the one checked.
    offset = parsed.utcoffset()
    if offset is not None and offset % _MINUTE:
        raise _invalid("fix_time's UTC offset must be whole minutes.")
    return parsed


def _attributes(value: Any) -> orjson.Fragment:
    if value is None:
        return _EMPTY_ATTRIBUTES
    if type(value) is not dict:
        raise _invalid("attributes must be an object.")
    if not value:
        return _EMPTY_ATTRIBUTES
    for name in value.keys() & _KNOWN_NAMES:
        kinds = KNOWN_ATTRIBUTES[name]
        if value[name] is not None and type(value[name]) not in kinds:
            raise _invalid(f"attributes.{name} must be {_TYPE_NAMES[kinds]}.")
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError:
        raise _invalid("attributes must hold JSON values only.") from None
    if len(encoded) > MAX_ATTRIBUTES_BYTES:
        raise _invalid(f"attributes must not exceed {MAX_ATTRIBUTES_BYTES} bytes of JSON.")
    if b"\\u0000" in encoded:  # Postgres text cannot hold NUL
        raise _invalid("attributes must not contain NUL characters.")
    return orjson.Fragment(encoded)


def _raw_attributes(raw: msgspec.Raw, *, read: bool) -> orjson.Fragment:
    """Attributes of a FastFix, passed on as sent when they are a plain object of valid
    types; anything unusual, or every one when ``read``, goes through :func:`_attributes`
    (which names the problem)."""
    data = bytes(raw)
    if not data or data == b"null" or data == b"{}":
        return _EMPTY_ATTRIBUTES
    # Escapes (\\u…) may hide NUL or lone surrogates Postgres refuses: the general check.
    if read or data[:1] != b"{" or len(data) > MAX_ATTRIBUTES_BYTES or b"\\u" in data:
        return _attributes(_loaded(data))
    try:
        _KNOWN.decode(data)
    except msgspec.DecodeError:
        return _attributes(_loaded(data))
    return orjson.Fragment(data)


def _loaded(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:  # well-formed, but a number beyond a double (1e999999)
        raise _invalid("attributes must hold numbers a double can hold.") from None


def _unique_id(value: Any) -> str:
    if type(value) is not str or not 0 < len(value) <= MAX_UNIQUE_ID_LENGTH or "\x00" in value:
        raise _invalid(f"device_id must be a string of 1 to {MAX_UNIQUE_ID_LENGTH} characters.")
    return value


def check_items(
    items: Sequence[Any],
    policy: FixPolicy,
    raws: Sequence[Any] | None = None,
    *,
    read_attributes: bool = False,
) -> CheckedItems:
    """One pass over the items; ``rows`` keep the items' order (the first of two repeats of
    one ``(device, fix_time)`` is the one stored). ``raws``, each item's JSON as sent, is
    what a rejected FastFix is kept as. A FastFix's attributes are passed on as sent unless
    ``read_attributes``: then each is read and written again, and one with a number a double
    cannot hold (1e999999, which jsonb refuses too) is rejected."""
    out = CheckedItems(total=len(items))
    store = out.rows.rows.append
    devices = policy.devices
    oldest, newest, max_speed = policy.oldest, policy.newest, policy.max_speed_kmh
    for index, item in enumerate(items):
        try:
            if type(item) is FastFix:
                unique_id, fix_time = item.device_id, item.fix_time
                lat, lon, speed, course = item.lat, item.lon, item.speed, item.course
                altitude, accuracy = item.altitude, item.accuracy
                if "\x00" in unique_id:
                    _unique_id(unique_id)
                attributes = _raw_attributes(item.attributes, read=read_attributes)
            else:
                unique_id, fix_time, lat, lon, speed, course, altitude, accuracy, attributes = (
                    _general_fields(item)
                )
            if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
                raise _Rejected(ItemCode.INVALID_COORDINATES, "lat or lon is out of range.")
            if lat == 0.0 and lon == 0.0:
                raise _Rejected(ItemCode.INVALID_COORDINATES, "(0, 0) is not a real fix.")
            if fix_time > newest:
                raise _Rejected(ItemCode.FIX_TIME_IN_FUTURE, policy.in_future_message)
            if fix_time < oldest:
                raise _Rejected(ItemCode.FIX_TIME_TOO_OLD, policy.too_old_message)
            if speed is not None and speed > max_speed:
                raise _Rejected(ItemCode.IMPLAUSIBLE_SPEED, f"speed is above {max_speed:g} km/h.")
            device = devices.get(unique_id)
            if (
                device is None
                or device.disabled
                or (device.since is not None and fix_time < device.since)
            ):
                raise _device_rejection(device)
        except _Rejected as rejected:
            raw = raws[index] if raws is not None else None
            out.reject(index, item, rejected.code, rejected.message, raw)
            continue
        store((device.id, fix_time, lat, lon, speed, course, altitude, accuracy, attributes))
    return out


def _device_rejection(device: DeviceRef | None) -> _Rejected:
    """Why the device does not take a fix the caller found it does not take."""
    if device is None:
        return _Rejected(ItemCode.UNKNOWN_DEVICE, "Unknown device.")
    if device.since is not None and not device.disabled:
        return _Rejected(
            ItemCode.BEFORE_TRANSFER,
            f"fix_time is before {_iso(device.since)}, when the device joined this organization.",
        )
    return _Rejected(ItemCode.UNKNOWN_DEVICE, "The device is disabled.")


def reject_dropped(
    checked: CheckedItems,
    dropped: Sequence[position_service.DroppedFix],
    items: Sequence[Any],
    raws: Sequence[Any] | None = None,
) -> None:
    """Move the rows the insert dropped (their device, as stored when it ran, did not take
    them: moved, deleted or disabled since the policy was read) from ``rows`` to the
    rejected items, with the code :func:`check_items` gives today's device."""
    rejected = {error["index"] for error in checked.errors}
    stored = [index for index in range(checked.total) if index not in rejected]
    rows = checked.rows.rows
    for fix in dropped:
        index, device_id = stored[fix.ordinal - 1], rows[fix.ordinal - 1][0]
        device = None if fix.gone else DeviceRef(device_id, fix.disabled, fix.assigned_at)
        why = _device_rejection(device)
        raw = raws[index] if raws is not None else None
        checked.reject(index, items[index], why.code, why.message, raw)
    left_out = {fix.ordinal - 1 for fix in dropped}
    checked.rows.rows = [row for n, row in enumerate(rows) if n not in left_out]
    checked.errors.sort(key=lambda error: int(error["index"]))
    checked.rejected_items.sort(key=lambda entry: int(entry["index"]))


def _general_fields(item: Any) -> tuple[Any, ...]:
    """The fields of an item that is not a FastFix, each checked in Python."""
    if type(item) is not dict:
        if isinstance(item, Unparseable):
            raise _invalid("Not valid JSON.")
        raise _invalid("Each position must be a JSON object.")
    get = item.get
    unique_id = _unique_id(get("device_id"))
    fix_time = _fix_time(get("fix_time"))
    lat = _number(get("lat"), "lat")
    lon = _number(get("lon"), "lon")
    if lat is None or lon is None:
        raise _invalid("lat and lon are required.")
    speed = _number(get("speed"), "speed")
    if speed is not None and speed < 0:
        raise _invalid("speed must not be negative.")
    course = _number(get("course"), "course")
    if course is not None and not 0 <= course <= 360:
        raise _invalid("course must be between 0 and 360.")
    altitude = _number(get("altitude"), "altitude")
    accuracy = _number(get("accuracy"), "accuracy")
    if accuracy is not None and accuracy < 0:
        raise _invalid("accuracy must not be negative.")
    attributes = _attributes(get("attributes"))
    return unique_id, fix_time, lat, lon, speed, course, altitude, accuracy, attributes


def named_devices(items: Sequence[Any]) -> set[str]:
    """The ``device_id`` strings the items name (to look them up before the pass)."""
    named = {item.device_id for item in items if type(item) is FastFix}
    named.update(
        unique_id
        for item in items
        if type(item) is dict
        and type(unique_id := item.get("device_id")) is str
        and 0 < len(unique_id) <= MAX_UNIQUE_ID_LENGTH
    )
    return {unique_id for unique_id in named if "\x00" not in unique_id}
