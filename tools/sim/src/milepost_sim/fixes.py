"""One position report as the simulator sends it, in both of the ingest's encodings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

KNOTS_TO_KMH = 1.852
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with ``Z`` (the ingest accepts any offset; the API answers in UTC)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class SimFix:
    """A fix of one tracker: ``speed`` in km/h, ``course`` in degrees, ``accuracy`` in m.

    ``attributes`` uses the ingest's known keys: ``ignition`` (bool), ``battery`` (%).
    """

    unique_id: str
    fix_time: datetime
    lat: float
    lon: float
    speed: float
    course: float = 0.0
    altitude: float = 34.0
    accuracy: float = 5.0
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def to_item(self) -> dict[str, Any]:
        """The item of ``POST /ingest/v1/positions`` (JSON or one NDJSON line)."""
        return {
            "device_id": self.unique_id,
            "fix_time": iso(self.fix_time),
            "lat": self.lat,
            "lon": self.lon,
            "speed": self.speed,
            "course": self.course,
            "altitude": self.altitude,
            "accuracy": self.accuracy,
            "attributes": dict(self.attributes),
        }

    def to_osmand(self) -> dict[str, str]:
        """The query parameters of ``/ingest/osmand/<key>`` (speed in knots, Unix time).

        The ingest converts knots back with six decimals, so the stored speed equals
        ``speed`` to 1e-6 km/h. Attributes other than ``battery`` (``batt``) are sent as
        parameters of their own name (booleans as ``true``/``false``).
        """
        params = {
            "id": self.unique_id,
            "timestamp": _unix(self.fix_time),
            "lat": repr(self.lat),
            "lon": repr(self.lon),
            "speed": repr(self.speed / KNOTS_TO_KMH),
            "bearing": repr(self.course),
            "altitude": repr(self.altitude),
            "accuracy": repr(self.accuracy),
        }
        for name, value in self.attributes.items():
            key = "batt" if name == "battery" else name
            params[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return params


def _unix(moment: datetime) -> str:
    """Unix seconds, exact, with the fraction only when there is one."""
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    seconds, rest = divmod(micros, 1_000_000)
    return str(seconds) if rest == 0 else f"{seconds}.{rest:06d}".rstrip("0")
