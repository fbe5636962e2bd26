"""The ingest benchmark's fleet: vehicles driving and parking around Berlin, their fixes cut
into batches (JSON bodies for the gateway, columns for the direct writes), and the
disjoint stretches of time each phase writes into."""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

VEHICLES = 200
VEHICLES_PER_BATCH = 20  # one gateway's fleet; 50 fixes each per batch, 5 s apart
R = 6_371_008.8


@dataclass
class Vehicle:
    unique_id: str
    device_id: uuid.UUID
    lat: float
    lon: float
    heading: float
    speed_kmh: float
    odometer: float
    battery: float


@dataclass
class Batch:
    """One push: its JSON body (gateway) or its rows as columns (direct writes)."""

    size: int
    body: bytes = b""
    columns: dict[str, list[Any]] = field(default_factory=dict)


class Fleet:
    """Vehicles driving and parking around Berlin, a fix every 5 s each."""

    def __init__(self, devices: list[tuple[str, uuid.UUID]], seed: int = 7) -> None:
        self.rnd = random.Random(seed)
        self.vehicles = [
            Vehicle(
                u,
                d,
                52.35 + self.rnd.random() * 0.3,
                13.2 + self.rnd.random() * 0.4,
                self.rnd.uniform(0, 2 * math.pi),
                0.0,
                self.rnd.uniform(1e4, 2e5),
                self.rnd.uniform(30, 100),
            )
            for u, d in devices
        ]

    def _step(self, v: Vehicle, seconds: float) -> None:
        rnd = self.rnd
        if rnd.random() < 0.02:
            v.speed_kmh = 0.0 if v.speed_kmh else rnd.uniform(20, 110)
        if v.speed_kmh:
            v.heading += rnd.gauss(0, 0.08)
            meters = v.speed_kmh / 3.6 * seconds
            v.lat += meters * math.cos(v.heading) / R * 180 / math.pi
            v.lon += (
                meters * math.sin(v.heading) / (R * math.cos(math.radians(v.lat))) * 180 / math.pi
            )
            v.odometer += meters
        v.battery = max(5.0, v.battery - rnd.random() * 0.02)

    def batches(self, count: int, start: datetime, size: int, *, body: bool) -> list[Batch]:
        """``count`` batches of ``size`` fixes, times from ``start`` on, all distinct: as
        JSON bodies (``body``) or as columns."""
        per_vehicle = size // VEHICLES_PER_BATCH
        out: list[Batch] = []
        group = 0
        moment = start
        for _ in range(count):
            vehicles = self.vehicles[group * VEHICLES_PER_BATCH : (group + 1) * VEHICLES_PER_BATCH]
            items: list[dict[str, Any]] = []
            cols: dict[str, list[Any]] = {
                k: []
                for k in (
                    "device_ids",
                    "fix_times",
                    "lats",
                    "lons",
                    "speeds",
                    "courses",
                    "altitudes",
                    "accuracies",
                    "attributes",
                )
            }
            for v in vehicles:
                for n in range(per_vehicle):
                    self._step(v, 5.0)
                    fix_time = moment + timedelta(
                        seconds=5 * n, milliseconds=self.rnd.randrange(1000)
                    )
                    speed = (
                        round(max(0.0, v.speed_kmh + self.rnd.gauss(0, 2)), 1)
                        if v.speed_kmh
                        else 0.0
                    )
                    attributes = {
                        "ignition": bool(v.speed_kmh) or self.rnd.random() < 0.1,
                        "battery": round(v.battery, 1),
                        "odometer": round(v.odometer),
                    }
                    item = {
                        "device_id": v.unique_id,
                        "fix_time": fix_time.isoformat().replace("+00:00", "Z"),
                        "lat": round(v.lat, 6),
                        "lon": round(v.lon, 6),
                        "speed": speed,
                        "course": round(math.degrees(v.heading) % 360, 1),
                        "altitude": round(34 + self.rnd.gauss(0, 3), 1),
                        "accuracy": round(self.rnd.uniform(3, 12), 1),
                        "attributes": attributes,
                    }
                    items.append(item)
                    cols["device_ids"].append(v.device_id)
                    cols["fix_times"].append(fix_time)
                    for name, key in (
                        ("lats", "lat"),
                        ("lons", "lon"),
                        ("speeds", "speed"),
                        ("courses", "course"),
                        ("altitudes", "altitude"),
                        ("accuracies", "accuracy"),
                    ):
                        cols[name].append(item[key])
                    cols["attributes"].append(orjson.dumps(attributes).decode())
            if body:
                out.append(Batch(len(items), body=orjson.dumps({"positions": items})))
            else:
                out.append(Batch(len(items), columns=cols))
            group += 1
            if (group + 1) * VEHICLES_PER_BATCH > len(self.vehicles):
                group = 0
                moment += timedelta(seconds=5 * per_vehicle)
        return out


class TimeSlots:
    """Disjoint stretches of time inside the partitions, one per phase: no phase's rows
    collide with another's, so every write stores new rows."""

    def __init__(self, days: int) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        self.next = now - timedelta(days=days - 1)
        self.end = now - timedelta(hours=1)

    def take(self, batches: int, size: int) -> datetime:
        start = self.next
        rounds = math.ceil(batches * VEHICLES_PER_BATCH / VEHICLES)
        self.next = start + timedelta(seconds=5 * (size // VEHICLES_PER_BATCH) * rounds + 60)
        if self.next > self.end:
            raise SystemExit("bench-ingest: out of partition days; lower --duration or --batch")
        return start
