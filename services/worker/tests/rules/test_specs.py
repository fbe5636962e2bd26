"""Which rules the engine evaluates for a device, with which limit and which shape."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts.models import AlertType
from milepost_common.domain.alerts.service import EnabledRule
from milepost_common.domain.devices.models import Device
from milepost_common.domain.geofences.schemas import WatchedFence
from milepost_common.domain.organizations.models import Organization
from milepost_worker.geo import Circle
from milepost_worker.rules import specs

ORG = Organization(id=uuid.uuid4(), name="Fleet", default_speed_limit_kmh=90.0)
DEVICE = Device(id=uuid.uuid4(), org_id=ORG.id, unique_id="van-1", name="Van 1")


def fence(geometry: dict[str, Any], radius_m: float | None = None) -> WatchedFence:
    """A geofence as the worker reads it: its geometry as JSON text."""
    return WatchedFence(uuid.uuid4(), radius_m, orjson.dumps(geometry).decode())


CIRCLE = fence({"type": "Point", "coordinates": [2.5, 1.5]}, 100.0)


def rule(kind: AlertType, watched: WatchedFence | None = None, **fields: Any) -> EnabledRule:
    values: dict[str, Any] = {"org_id": ORG.id, "name": str(kind), "params": {}, **fields}
    return EnabledRule(AlertRule(id=uuid.uuid4(), type=kind, **values), watched)


class TestRuleSpecs:
    def test_only_the_organizations_fix_rules_that_name_the_device(self) -> None:
        mine = rule(AlertType.OVERSPEED)
        named = rule(AlertType.IDLE, params={"min_duration_s": 60}, vehicle_ids=[DEVICE.id])
        rules = [
            mine,
            rule(AlertType.OVERSPEED, org_id=uuid.uuid4()),
            rule(AlertType.OFFLINE, params={"after_s": 600}),
            rule(AlertType.LOW_BATTERY, vehicle_ids=[uuid.uuid4()]),
            named,
        ]

        found = specs.rule_specs(rules, DEVICE, ORG, {}, specs.coverage(rules))

        assert [s.id for s in found] == [str(mine.rule.id), str(named.rule.id)]

    def test_a_batch_matches_its_devices_against_each_rules_vehicles_as_a_set(self) -> None:
        # A rule lists up to 10,000 vehicles: searched as a list for each device of a batch,
        # 300 such rules cost a worker ~20 s a batch. The batch's coverage holds each list as
        # a set, made once; a rule for all vehicles covers every device.
        vehicles = sorted(uuid.uuid4() for _ in range(10_000))
        listing = [rule(AlertType.LOW_BATTERY, vehicle_ids=vehicles) for _ in range(3)]
        rules = [*listing, rule(AlertType.LOW_BATTERY)]
        listed, unlisted = (
            Device(id=v, org_id=ORG.id, unique_id=str(v), name="v")
            for v in (vehicles[-1], uuid.uuid4())
        )

        covered = specs.coverage(rules)

        assert [covered[r.rule.id] for r in listing] == [frozenset(vehicles)] * 3
        assert len(specs.rule_specs(rules, listed, ORG, {}, covered)) == 4
        assert len(specs.rule_specs(rules, unlisted, ORG, {}, covered)) == 1

    def test_the_devices_limit_else_the_organizations(self) -> None:
        rules = [rule(AlertType.OVERSPEED)]
        own = Device(id=DEVICE.id, org_id=ORG.id, unique_id="van-1", speed_limit_kmh=50.0)

        assert specs.rule_specs(rules, own, ORG, {}, specs.coverage(rules))[0].limit_kmh == 50.0
        assert specs.rule_specs(rules, DEVICE, ORG, {}, specs.coverage(rules))[0].limit_kmh == 90.0

    def test_a_geofence_rule_watches_its_shape_or_nothing(self) -> None:
        watched = rule(AlertType.GEOFENCE_ENTER, CIRCLE, params={"geofence_id": str(CIRCLE.id)})
        unfound = rule(AlertType.GEOFENCE_EXIT, params={"geofence_id": "not-an-id"})
        rules = [watched, unfound]

        found = specs.rule_specs(rules, DEVICE, ORG, specs.shapes_of(rules), specs.coverage(rules))

        assert found[0].shape == Circle(lat=1.5, lon=2.5, radius_m=100.0)
        assert found[1].shape is None


class TestShapes:
    def test_each_geofence_once_and_an_unreadable_shape_left_out(self) -> None:
        broken = fence({"type": "Line"})
        not_json = WatchedFence(uuid.uuid4(), None, "{")
        rules = [
            rule(AlertType.GEOFENCE_ENTER, CIRCLE),
            rule(AlertType.GEOFENCE_EXIT, CIRCLE),
            rule(AlertType.GEOFENCE_ENTER, broken),
            rule(AlertType.GEOFENCE_ENTER, not_json),
            rule(AlertType.OVERSPEED),
        ]
        assert set(specs.shapes_of(rules)) == {CIRCLE.id}

    def test_a_shape_is_parsed_once_until_its_geometry_changes(self, monkeypatch: Any) -> None:
        parsed: list[dict[str, Any]] = []
        parse = specs.geo.parse_shape

        def counted(geometry: dict[str, Any], radius_m: float | None = None) -> Any:
            parsed.append(geometry)
            return parse(geometry, radius_m)

        monkeypatch.setattr(specs.geo, "parse_shape", counted)
        cache = specs.ShapeCache()
        watched = square(0.01)
        # Every batch reads its fences anew: equal text, other objects.
        for _ in range(3):
            again = WatchedFence(watched.id, watched.radius_m, watched.geometry.encode().decode())
            shapes = specs.shapes_of([rule(AlertType.GEOFENCE_ENTER, again)], cache)
        assert len(parsed) == 1
        assert shapes[watched.id] == cache.shape(watched)

        moved = watched._replace(geometry=square(0.02).geometry)
        assert (
            specs.shapes_of([rule(AlertType.GEOFENCE_EXIT, moved)], cache)[watched.id]
            != shapes[watched.id]
        )
        assert len(parsed) == 2

    def test_the_least_recently_used_shapes_go_beyond_the_vertex_budget(self) -> None:
        cache = specs.ShapeCache(max_vertices=8)  # two squares of four vertices
        first, second, third = square(0.01), square(0.02), square(0.03)
        kept = cache.shape(first)
        cache.shape(second)
        assert cache.shape(first) is kept  # used again: now the most recent
        cache.shape(third)  # over the budget: the second goes

        assert cache.shape(first) is kept
        assert [len(cache._shapes), cache._vertices] == [2, 8]

    def test_the_least_recently_used_shapes_go_beyond_the_index_budget(self) -> None:
        # Combs of 10,000 vertices (legal polygons), every edge spanning the fence's height:
        # 100 bands of latitude each listing all 10,000 edges, and again by longitude: ~2M
        # entries, ~26 MB a fence kept.
        def comb(west: float) -> WatchedFence:
            teeth = [[west + i / 1e5, float(i % 2)] for i in range(9_999)]
            return fence({"type": "Polygon", "coordinates": [[*teeth, teeth[0]]]})

        cache = specs.ShapeCache()
        for west in (0.0, 1.0, 2.0):
            cache.shape(comb(west))

        assert [len(cache._shapes), cache._vertices] == [2, 19_998]


def square(half_deg: float) -> WatchedFence:
    ring = [
        [-half_deg, -half_deg],
        [half_deg, -half_deg],
        [half_deg, half_deg],
        [-half_deg, half_deg],
    ]
    return fence({"type": "Polygon", "coordinates": [[*ring, ring[0]]]})
