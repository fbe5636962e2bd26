"""The api benchmark's data: an organization with vehicles that drove for days, their
positions, trips, stops and alerts, written straight into the database."""

from __future__ import annotations

import random
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg  # type: ignore[import-untyped]

from milepost_common.domain.trips.models import TRIP_FIELDS


def log(message: str) -> None:
    print(f"bench-api: {message}", file=sys.stderr, flush=True)


@dataclass
class Seeded:
    org_id: uuid.UUID
    owner_id: uuid.UUID
    vehicle_ids: list[uuid.UUID]
    positions: int
    trips: int


async def seed(url: str, vehicles: int, days: int, interval_min: int) -> Seeded:
    rnd = random.Random(11)
    conn = await asyncpg.connect(url)
    try:
        org_id, owner_id = uuid.uuid4(), uuid.uuid4()
        await conn.execute(
            "INSERT INTO organizations (id, name, timezone, retention_days, trip_min_distance_m,"
            " trip_min_duration_s, trip_stop_gap_s, max_speed_kmh, max_clock_skew_s)"
            " VALUES ($1, 'Bench fleet', 'Europe/Berlin', 365, 200, 180, 3600, 400, 300)",
            org_id,
        )
        await conn.execute(
            "INSERT INTO users (id, org_id, email, role, is_active) VALUES"
            " ($1, $2, 'owner@bench.example', 'owner', true)",
            owner_id,
            org_id,
        )
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        start = now - timedelta(days=days)
        ids = [uuid.uuid4() for _ in range(vehicles)]
        await conn.copy_records_to_table(
            "devices",
            records=[
                (d, org_id, f"imei-{i:06d}", f"Vehicle {i}", False) for i, d in enumerate(ids)
            ],
            columns=["id", "org_id", "unique_id", "name", "disabled"],
        )
        await conn.copy_records_to_table(
            "device_state",
            records=[
                (
                    d,
                    org_id,
                    now,
                    52.5 + rnd.random() / 5,
                    13.3 + rnd.random() / 5,
                    42.0,
                    "{}",
                    "moving",
                )
                for d in ids
            ],
            columns=[
                "device_id",
                "org_id",
                "last_fix_time",
                "last_lat",
                "last_lon",
                "last_speed",
                "last_attributes",
                "motion",
            ],
        )
        steps = days * 24 * 60 // interval_min
        positions = 0
        for chunk in range(0, vehicles, 50):
            records = []
            for d in ids[chunk : chunk + 50]:
                lat, lon = 52.5 + rnd.random() / 5, 13.3 + rnd.random() / 5
                for k in range(steps):
                    lat += rnd.uniform(-1e-3, 1e-3)
                    lon += rnd.uniform(-1e-3, 1e-3)
                    records.append(
                        (
                            d,
                            start + timedelta(minutes=k * interval_min),
                            org_id,
                            lat,
                            lon,
                            rnd.uniform(0, 90),
                            rnd.uniform(0, 360),
                            '{"ignition": true, "battery": 80}',
                        )
                    )
            await conn.copy_records_to_table(
                "positions",
                records=records,
                columns=[
                    "device_id",
                    "fix_time",
                    "org_id",
                    "lat",
                    "lon",
                    "speed",
                    "course",
                    "attributes",
                ],
            )
            positions += len(records)
            log(f"seeded {positions:,} positions")
        trips = []
        for d in ids:
            for day in range(days):
                for hour in (7, 11, 15, 18):
                    t0 = start + timedelta(days=day, hours=hour)
                    minutes = rnd.uniform(10, 60)
                    km = minutes / 60 * rnd.uniform(25, 60)
                    trips.append(
                        (
                            uuid.uuid4(),
                            org_id,
                            d,
                            t0,
                            t0 + timedelta(minutes=minutes),
                            52.5,
                            13.4,
                            52.6,
                            13.5,
                            km * 1000,
                            minutes * 60,
                            km / (minutes / 60),
                            rnd.uniform(60, 120),
                        )
                    )
        await conn.copy_records_to_table(
            "trips",
            records=trips,
            columns=["id", "org_id", "device_id", "start_time", *TRIP_FIELDS],
        )
        await conn.execute("ANALYZE")
        return Seeded(org_id, owner_id, ids, positions, len(trips))
    finally:
        await conn.close()
