"""A late fix's replay against Postgres: it stops where it converges with the stored
checkpoints, reads the device's fixes a chunk at a time, and gives the in-order result."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession
from worker_support import MemoryStore, at, base_time_s, expected_rows, rows, write_batch

from milepost_common.domain.alert_rules.models import AlertRule
from milepost_common.domain.alerts import service as alert_service
from milepost_common.domain.alerts.models import AlertType
from milepost_common.domain.devices.models import Device
from milepost_common.domain.organizations.models import Organization
from milepost_common.testing.factories import make_device, make_organization
from milepost_worker.handlers import ingest_batches
from milepost_worker.handlers.ingest_batches import process_batch
from milepost_worker.motion.machine import Fix, MotionParams
from milepost_worker.rules import specs as rule_specs
from milepost_worker.rules.engine import RuleSpec
from milepost_worker.runtime import WorkerContext

CYCLES = 8
CYCLE_S = 2_400  # 20 minutes parked (idling every other time), then 10 minutes at 90 km/h


def history(t0: float) -> list[Fix]:
    fixes: list[Fix] = []
    for k in range(CYCLES):
        base, east = t0 + k * CYCLE_S, 15_000.0 * k
        idling = k % 2 == 1
        fixes += [
            at(t, east, t0_s=base, speed=0.0, ignition=idling, battery=80)
            for t in range(0, 1_200, 30)
        ]
        fixes += [
            at(1_200 + 10 * i, east + 250.0 * i, t0_s=base, speed=90.0, ignition=True, battery=80)
            for i in range(1, 61)
        ]
    return fixes


def recomputed() -> float:
    labels = {"path": "recompute"}
    return REGISTRY.get_sample_value("milepost_worker_fixes_total", labels) or 0.0


async def rules_of(session: AsyncSession, org: Organization, device: Device) -> list[RuleSpec]:
    """An overspeed and an idle rule, and their specs as the worker builds them."""
    rules = [
        AlertRule(
            org_id=org.id,
            name="fast",
            type=AlertType.OVERSPEED,
            params={"limit_kmh": 80, "min_duration_s": 20},
        ),
        AlertRule(org_id=org.id, name="idle", type=AlertType.IDLE, params={"min_duration_s": 120}),
    ]
    session.add_all(rules)
    await session.flush()
    enabled = await alert_service.list_enabled_rules(session, [org.id])
    return rule_specs.rule_specs(enabled, device, org, {}, rule_specs.coverage(enabled))


async def process_in_order(
    ctx: WorkerContext, session: AsyncSession, device: Device, fixes: list[Fix], size: int
) -> None:
    for lo in range(0, len(fixes), size):
        batch = await write_batch(session, device, fixes[lo : lo + size])
        await session.commit()
        await process_batch(ctx, batch.id)


class TestLateFixReplay:
    @pytest.fixture(autouse=True)
    def small_chunks(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # Chunks far smaller than the history, so the replay crosses several.
        monkeypatch.setattr(ingest_batches, "REPLAY_CHUNK", 17)

    async def test_a_fix_hours_late_replays_until_the_next_settled_stop(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        org = await make_organization(session)
        device = await make_device(session, org)
        specs = await rules_of(session, org, device)
        t0 = base_time_s() - CYCLES * CYCLE_S
        fixes = history(t0)
        await process_in_order(ctx, session, device, fixes, 50)

        # Each faster than any fix of its drive, between two of its fixes: one alone, one
        # with fixes newer than every stored one; then the next batch.
        def late(k: int) -> Fix:
            east = 15_000.0 * k + 250.0 * 30.5
            return at(1_200 + 305, east, t0_s=t0 + k * CYCLE_S, speed=130.0 + k)

        end = t0 + CYCLES * CYCLE_S
        newer = [
            at(t, 15_000.0 * CYCLES, t0_s=end, speed=0.0, battery=80) for t in range(0, 300, 30)
        ]
        replayed = []
        for batch in ([late(1)], [late(5), *newer[:5]]):
            before = recomputed()
            await process_in_order(ctx, session, device, batch, 50)
            replayed.append(recomputed() - before)
        await process_in_order(ctx, session, device, newer[5:], 50)

        store = MemoryStore(MotionParams(), specs)
        store.process(store.ingest(sorted([*fixes, late(1), late(5), *newer], key=lambda f: f.t)))
        expected = expected_rows(store)
        assert await rows(session, device) == expected
        assert [trip[3] for trip in expected["trips"]][1:6:4] == [131.0, 135.0]
        # From the stop before the late fix to the one after it: about one cycle's 100 fixes,
        # of the 700 and 300 after them.
        assert replayed[0] <= 200
        assert replayed[1] <= 200

    async def test_a_fix_late_in_a_long_stop_replays_hours_not_days(
        self, ctx: WorkerContext, session: AsyncSession
    ) -> None:
        # Parked for two days, a fix every 2 minutes: no stop settles after the first fix, so
        # only the checkpoint grid (a cell of CHECKPOINT_EVERY_S, 6 h) bounds the replay.
        org = await make_organization(session)
        device = await make_device(session, org)
        specs = await rules_of(session, org, device)
        t0 = base_time_s() - 2 * 86_400
        fixes = [at(t, 5.0 * (t % 7), t0_s=t0, speed=0.0) for t in range(0, 2 * 86_400, 120)]
        await process_in_order(ctx, session, device, fixes, 500)

        late = at(86_400 + 61, 3.0, t0_s=t0, speed=0.0)
        before = recomputed()
        await process_in_order(ctx, session, device, [late], 50)
        replayed = recomputed() - before

        store = MemoryStore(MotionParams(), specs)
        store.process(store.ingest(sorted([*fixes, late], key=lambda f: f.t)))
        assert await rows(session, device) == expected_rows(store)
        # At most two cells of 180 fixes, of the 720 after the late fix.
        assert replayed <= 2 * 180 + 1
