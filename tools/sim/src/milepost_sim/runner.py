"""Driving the fleet through the gateway: live, in real time, or a past day at once."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TextIO

from milepost_sim.fixes import SimFix
from milepost_sim.fleet import Fleet
from milepost_sim.push import Pusher, PushStats


class Progress:
    """One status line: rewritten in place on a terminal, printed every ``every_s`` to a
    file (the demo's log)."""

    def __init__(self, stream: TextIO | None = None, every_s: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every_s = 1.0 if self.tty else every_s
        self.last = -self.every_s

    def update(self, elapsed_s: float, stats: PushStats, force: bool = False) -> None:
        if not force and elapsed_s - self.last < self.every_s:
            return
        self.last = elapsed_s
        rate = stats.sent / elapsed_s if elapsed_s > 0 else 0.0
        line = (
            f"milepost-sim [{elapsed_s:6.0f}s] {stats.sent} fixes sent ({rate:.1f}/s): "
            f"{stats.batches} batches ({stats.accepted} stored, {stats.rejected} rejected, "
            f"{stats.duplicates} duplicates), {stats.osmand} OsmAnd; "
            f"{stats.retries} retries, {stats.failed} failed"
        )
        if self.tty:
            self.stream.write(f"\r{line}\x1b[K")
            if force:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


@dataclass(slots=True)
class RunResult:
    stats: PushStats
    # Fixes the ingest answered for (202 or 200), by unique_id: what must be stored once.
    delivered: Counter[str] = field(default_factory=Counter)
    # Every fix sent, when the run was asked to keep them.
    fixes: list[SimFix] = field(default_factory=list)


def _deliver(
    pusher: Pusher, fixes: list[SimFix], phones: frozenset[str], result: RunResult
) -> None:
    """The gateway trackers' fixes as one batch, then each phone's through OsmAnd."""
    batch = [fix for fix in fixes if fix.unique_id not in phones]
    if batch and pusher.push_batch(batch) is not None:
        result.delivered.update(fix.unique_id for fix in batch)
    for fix in fixes:
        if fix.unique_id in phones and pusher.push_osmand(fix):
            result.delivered[fix.unique_id] += 1


def run_live(
    pusher: Pusher,
    fleet: Fleet,
    *,
    rate: float,
    duration_s: float = 0.0,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.time,
    keep: bool = False,
) -> RunResult:
    """Send each vehicle's fix at the current time, ``rate`` fixes a second across the fleet,
    for ``duration_s`` seconds (0: until ``stop`` is set). Phones use OsmAnd, the others
    share one batch per round. ``keep`` keeps every fix sent in the result."""
    stop = stop or threading.Event()
    vehicles = fleet.vehicles
    phones = frozenset(v.spec.unique_id for v in vehicles if v.spec.transport == "osmand")
    interval = len(vehicles) / rate
    started = clock()
    due = [started + interval * i / len(vehicles) for i in range(len(vehicles))]
    result = RunResult(pusher.stats)
    while not stop.is_set():
        now = clock()
        if duration_s and now - started >= duration_s:
            break
        moment = datetime.fromtimestamp(round(now, 3), UTC)
        fixes = []
        for i, vehicle in enumerate(vehicles):
            if due[i] > now:
                continue
            due[i] = max(due[i] + interval, now + interval / 2)
            fix = vehicle.fix_at(moment)
            if fix is not None:
                fixes.append(fix)
        _deliver(pusher, fixes, phones, result)
        if keep:
            result.fixes.extend(fixes)
        if progress:
            progress.update(clock() - started, pusher.stats)
        wait = min(due) - clock()
        if duration_s:
            wait = min(wait, started + duration_s - clock())
        if wait > 0:
            stop.wait(wait)
    if progress:
        progress.update(clock() - started, pusher.stats, force=True)
    return result


def day_start(day: datetime) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def backfill(
    pusher: Pusher,
    fleet: Fleet,
    start: datetime,
    end: datetime,
    *,
    moving_s: float = 10.0,
    parked_s: float = 300.0,
    batch_size: int = 5000,
    progress: Progress | None = None,
) -> RunResult:
    """Every fix of ``[start, end)`` in time order, in batches of ``batch_size`` (phones'
    fixes too: a gateway uploading a day of history does not speak OsmAnd)."""
    started = time.monotonic()
    fixes = sorted(fleet.history(start, end, moving_s, parked_s), key=lambda fix: fix.fix_time)
    result = RunResult(pusher.stats)
    for first in range(0, len(fixes), batch_size):
        chunk = fixes[first : first + batch_size]
        if pusher.push_batch(chunk) is not None:
            result.delivered.update(fix.unique_id for fix in chunk)
        if progress:
            progress.update(time.monotonic() - started, pusher.stats)
    if progress:
        progress.update(time.monotonic() - started, pusher.stats, force=True)
    return result


def yesterday(now: datetime | None = None) -> datetime:
    return day_start((now or datetime.now(UTC)) - timedelta(days=1))
