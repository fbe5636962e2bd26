"""Rule specs: an organization's alert rules as the engine evaluates them for one device.

No I/O: the handler reads the devices with their organizations and the rules with the
geofences they watch; this decides which rules apply to a device (its organization's
fix-derived ones that name it, or every vehicle), which speed limit stands in for a rule
without its own (the device's, else the organization's default), and which shape each
geofence rule watches.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence

import orjson

from milepost_common.domain.alerts.service import EnabledRule
from milepost_common.domain.devices.models import Device
from milepost_common.domain.geofences.schemas import WatchedFence
from milepost_common.domain.organizations.models import Organization
from milepost_common.logging import get_logger
from milepost_worker import geo
from milepost_worker.rules.engine import FIX_RULE_TYPES, RuleSpec

log = get_logger("milepost.worker.batches")


class ShapeCache:
    """Parsed shapes by their geofence's geometry, kept across batches: decoding, parsing
    and indexing a polygon of 10,000 vertices takes ~20 ms, reading a fix's side of it ~0.1
    ms. Keyed by the geometry's text (what Postgres writes for the same geometry is the same
    text), so a changed fence is parsed again however it was changed. The least recently
    used go first once the shapes kept hold ``max_vertices`` in all, or their indexes
    ``max_entries`` (``Polygon.index_entries``: a polygon lists an edge in every band of
    latitude it spans, and the edges crossing a crowded band again, by longitude: a zigzag of
    10,000 vertices whose every edge spans its height holds ~2,000,000 entries, 26 MB, where
    an ordinary fence of 10,000 holds ~10,200)."""

    def __init__(self, max_vertices: int = 500_000, max_entries: int = 4_000_000) -> None:
        self.max_vertices = max_vertices
        self.max_entries = max_entries
        self._shapes: OrderedDict[bytes, tuple[geo.Shape, int, int]] = OrderedDict()
        self._vertices = 0
        self._entries = 0

    def shape(self, fence: WatchedFence) -> geo.Shape:
        """``fence``'s shape. Raises ValueError, TypeError or IndexError for an unreadable
        geometry (``geo.parse_shape``; JSON that does not decode is a ValueError)."""
        content = f"{fence.radius_m!r}\n{fence.geometry}".encode()
        key = hashlib.blake2b(content, digest_size=16).digest()
        kept = self._shapes.get(key)
        if kept is not None:
            self._shapes.move_to_end(key)
            return kept[0]
        shape = geo.parse_shape(orjson.loads(fence.geometry), fence.radius_m)
        size, entries = 1, 0
        if isinstance(shape, geo.Polygon):
            size, entries = sum(map(len, shape.rings)), shape.index_entries
        self._shapes[key] = (shape, size, entries)
        self._vertices += size
        self._entries += entries
        while (self._vertices > self.max_vertices or self._entries > self.max_entries) and len(
            self._shapes
        ) > 1:
            _, dropped, dropped_entries = self._shapes.popitem(last=False)[1]
            self._vertices -= dropped
            self._entries -= dropped_entries
        return shape


# One per worker process.
_SHAPES = ShapeCache()


def shapes_of(
    rules: Iterable[EnabledRule], cache: ShapeCache = _SHAPES
) -> dict[uuid.UUID, geo.Shape]:
    """The shape of each readable geofence the rules watch (from ``cache`` when it holds the
    same geometry); an unreadable one is logged and left out (its rules then watch
    nothing)."""
    shapes: dict[uuid.UUID, geo.Shape] = {}
    for fence in {r.geofence.id: r.geofence for r in rules if r.geofence is not None}.values():
        try:
            shapes[fence.id] = cache.shape(fence)
        except (ValueError, TypeError, IndexError):
            log.warning("geofence_unreadable", geofence_id=str(fence.id))
    return shapes


Coverage = Mapping[uuid.UUID, frozenset[uuid.UUID] | None]


def coverage(rules: Iterable[EnabledRule]) -> Coverage:
    """Each rule's vehicles as a set (None: all), made once for a batch: a rule lists up to
    10,000 vehicles, and asking each of its devices whether a list of them holds it cost
    0.67 s a device with 1,000 such rules (measured), where a set answers at once."""
    return {
        rule.id: None if rule.vehicle_ids is None else frozenset(rule.vehicle_ids)
        for rule, _ in rules
    }


def rule_specs(
    rules: Sequence[EnabledRule],
    device: Device,
    org: Organization,
    shapes: Mapping[uuid.UUID, geo.Shape],
    covered: Coverage,
) -> list[RuleSpec]:
    """The device's organization's enabled fix-derived rules that apply to it, in order
    (``shapes`` and ``covered``: the rules' ``shapes_of`` and ``coverage``, made once for a
    batch)."""
    limit = (
        device.speed_limit_kmh
        if device.speed_limit_kmh is not None
        else org.default_speed_limit_kmh
    )
    specs = []
    for rule, fence in rules:
        if (
            rule.org_id != device.org_id
            or rule.type not in FIX_RULE_TYPES
            or not _applies(covered[rule.id], device.id)
        ):
            continue
        shape = shapes.get(fence.id) if fence is not None else None
        specs.append(RuleSpec(str(rule.id), str(rule.type), rule.params, limit, shape))
    return specs


def _applies(vehicles: frozenset[uuid.UUID] | None, device_id: uuid.UUID) -> bool:
    return vehicles is None or device_id in vehicles
