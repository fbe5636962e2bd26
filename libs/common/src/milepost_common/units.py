"""Numbers as clients see them: rounded at the edge, JSON and CSV alike (DESIGN.md, Public
contracts). Metres and km/h to 0.1, durations to whole seconds.

Stored values keep their precision (the worker sums distances and durations from them); every
answer, export and CSV rounds here and only here: the schemas through the annotated types
below, the CSV writers and the organization export through ``round_fields``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import PlainSerializer

# How the OpenAPI descriptions say it.
METRES = "Metres, rounded to 0.1."
KMH = "km/h, rounded to 0.1."
SECONDS = "Seconds, rounded to whole seconds."

# Field names that carry km/h or metres without a unit suffix.
_TENTH_NAMES = frozenset({"speed", "avg_speed", "max_speed", "altitude", "accuracy"})


def tenth(value: float | None) -> float | None:
    """Metres or km/h as shown: to 0.1 (None, NaN and infinities pass through)."""
    if value is None or not math.isfinite(value):
        return value
    return round(float(value), 1)


def whole(value: float | None) -> int | None:
    """A duration as shown: whole seconds (None for a missing or non-finite value)."""
    if value is None or not math.isfinite(value):
        return None
    return round(value)


def rounder_for(name: str) -> Any:
    """How a field named ``name`` is shown: ``tenth`` for speeds and metres (``*_m``,
    ``*_kmh``, ``speed``, ``altitude``, ``accuracy``…), ``whole`` for durations (``*_s``),
    None for anything else."""
    if name in _TENTH_NAMES or name.endswith(("_m", "_kmh")):
        return tenth
    if name.endswith("_s"):
        return whole
    return None


def round_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with its numbers rounded by their names (``rounder_for``); other values, and
    booleans, as they are."""
    out = dict(data)
    for name, value in data.items():
        if type(value) in (int, float):
            rounder = rounder_for(name)
            if rounder is not None:
                out[name] = rounder(value)
    return out


Metres = Annotated[float, PlainSerializer(tenth, return_type=float)]
Kmh = Annotated[float, PlainSerializer(tenth, return_type=float)]
Seconds = Annotated[float, PlainSerializer(whole, return_type=int)]
# A JSON object of measurements (an alert's details): its numbers rounded by their names.
Measured = Annotated[dict[str, Any], PlainSerializer(round_fields, return_type=dict[str, Any])]
