"""bench/api's results: what one phase measured, the figures ``make bench`` collects, and
bench/api/RESULTS.md written from the best round of each phase."""

from __future__ import annotations

import argparse
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.api.seed import Seeded

BARE = "bare FastAPI constant"
BARE_APPS = "bare FastAPI constant, the apps' HTTP protocol"
POSITIONS = "positions (limit=100)"
HEALTH = "api /health (no auth, no database)"
LATEST = "latest positions (fleet)"
SUMMARY = "summary report (7 days)"
DIRECT = "history query direct (asyncpg)"
LATEST_GZIP = "latest positions, gzip accepted"
LATEST_GEOJSON = "latest positions as GeoJSON"
LATEST_CHURN = "latest positions, dropped 10 times a second"
SUMMARY_GZIP = "summary report, gzip accepted"
LATEST_BYTES = "bare: the latest positions' bytes"
SUMMARY_BYTES = "bare: the summary's bytes"
SUMMARY_RAW = "raw socket: the summary's bytes"
# Each read against its own floor, measured in the same run (DESIGN.md, Bars): the bar's
# measure, its floor and the ratio it must reach.
BARS = (
    (POSITIONS, DIRECT, 0.5),
    (LATEST, HEALTH, 0.5),
    (SUMMARY, HEALTH, 0.5),
    (HEALTH, BARE, 0.7),
)
# Context, no bar: each cached read against what its bytes alone cost, and as a client that
# accepts gzip asks for it (how the summary's bar, out of reach at 1.7 MB, could be restated);
# the raw socket's row is the most any Python server here can send of the summary's bytes.
CONTEXT = (
    (HEALTH, BARE_APPS),
    (BARE_APPS, BARE),
    (LATEST, LATEST_BYTES),
    (SUMMARY, SUMMARY_BYTES),
    (SUMMARY_RAW, HEALTH),
    (LATEST_CHURN, LATEST),
    (LATEST_CHURN, HEALTH),
    (LATEST_GZIP, HEALTH),
    (LATEST_GEOJSON, LATEST),
    (SUMMARY_GZIP, HEALTH),
)
# Kept from the results file when the report is rewritten (written by hand: py-spy runs).
PROFILE_HEADING = "## Profile"


@dataclass
class Measure:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    # CPU per request of the serving process and of all Postgres processes (µs; NaN: n/a).
    app_cpu_us: float = float("nan")
    db_cpu_us: float = float("nan")
    # The load client's (wrk's) CPU over the phase, in % of one core: near 100, wrk is the
    # limit, not the server (NaN: no wrk).
    client_cpu_pct: float = float("nan")


def figures(best: dict[str, Measure], rss: dict[str, int | None]) -> dict[str, object]:
    """The best round's requests per second by endpoint, and the api's peak RSS (KiB)."""
    keys = {BARE: "bare", POSITIONS: "positions", LATEST: "latest", SUMMARY: "summary"}
    keys |= {BARE_APPS: "bare_apps"}
    keys |= {HEALTH: "health", DIRECT: "direct"}
    keys |= {LATEST_BYTES: "latest_bytes", SUMMARY_BYTES: "summary_bytes"}
    keys |= {SUMMARY_RAW: "summary_raw", LATEST_CHURN: "latest_churn"}
    keys |= {LATEST_GZIP: "latest_gzip", SUMMARY_GZIP: "summary_gzip"}
    keys |= {LATEST_GEOJSON: "latest_geojson"}
    return {
        "rps": {key: best[name].rps for name, key in keys.items()},
        "peak_rss_kib": rss,
    }


def _us(value: float) -> str:
    return "–" if value != value else f"{value:,.0f}"  # NaN: not measured


def report(
    args: argparse.Namespace, seeded: Seeded, seed_s: float, best: dict[str, Measure]
) -> None:
    floors = {name: floor for name, floor, _ in BARS}
    lines = [
        "# bench/api — results",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
        f"({os.cpu_count() or 1} cores, shared), `uv run python -m bench.api"
        f" --vehicles {args.vehicles} --days {args.days} --interval-min {args.interval_min}"
        f" --duration {args.duration} --connections {args.connections} --rounds {args.rounds}"
        f" --log-level {args.log_level}`.",
        "",
        f"Seed: {args.vehicles:,} vehicles, {seeded.positions:,} positions ({args.days} days,"
        f" one fix every {args.interval_min} min per vehicle — scaled down from a fix every few"
        f" seconds to keep seeding to {seed_s:.0f} s), {seeded.trips:,} trips.",
        "Load: Debian's `wrk`, 1 thread, the same connections and duration for every phase;"
        " api and bare apps each one uvicorn process on their own port (the raw server one uvloop"
        " process); best of the rounds."
        " CPU per request: the serving process's (the bench process's for the direct query)"
        " and all Postgres processes' user+system time over the phase, from `/proc`; wrk's"
        " CPU in % of one core over the phase (near 100: the load client is the limit).",
        "",
        "| endpoint | req/s | p50 ms | p99 ms | errors | app CPU µs/req | Postgres CPU µs/req"
        " | wrk CPU % | its floor | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for m in best.values():
        floor = floors.get(m.name)
        shown = f"{m.rps / best[floor].rps:.2f}" if floor and best[floor].rps else "–"
        lines.append(
            f"| {m.name} | {m.rps:,.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} | {m.errors}"
            f" | {_us(m.app_cpu_us)} | {_us(m.db_cpu_us)} | {_us(m.client_cpu_pct)}"
            f" | {floor or '–'} | {shown} |"
        )
    lines += ["", "Bars (DESIGN.md), each read against its floor in this run:", ""]
    for name, floor, target in BARS:
        ratio = best[name].rps / best[floor].rps if best[floor].rps else 0.0
        verdict = "met" if ratio >= target else "**NOT met**"
        lines.append(f"- {name} / {floor} = **{ratio:.2f}** (≥ {target}: {verdict})")
    lines += ["", "Context (no bar):", ""]
    for name, floor in CONTEXT:
        ratio = best[name].rps / best[floor].rps if best[floor].rps else 0.0
        lines.append(f"- {name} / {floor} = {ratio:.2f}")
    lines += [
        "",
        "The latest positions come from the cache (dropped by the worker on every position"
        " event; nothing writes during the run), the summary from its 60 s cache after the"
        " first request, each served from the api process's own copy while Redis reports no"
        " change of its key; the positions read hits Postgres on every request (a random"
        " vehicle's first page, keyset on the primary key across the daily partitions). The"
        " direct query is the api's statement for that page sent by asyncpg from this process"
        " (a pool of the api's size, no HTTP), the floor of the positions read. The two"
        " `bare:` rows send a body of the same size as the cached read's from the bare app:"
        " what the bytes alone cost; the `apps' HTTP protocol` row serves the bare app on the"
        " protocols the apps run (each answer written in one call, `milepost_common.web.serve`):"
        " what that alone is worth against stock uvicorn; the `raw socket` row sends the"
        " summary's from a server"
        " with no HTTP framework on the same event loop (bench/api/raw.py): the ceiling for"
        " any server measured this way (there `wrk` reading the bytes is the limit: its CPU"
        " near 100 %); the `gzip accepted` rows ask for the cached reads as browsers and most"
        " HTTP clients do, the `GeoJSON` row as a map asks for the latest positions (`Accept:"
        " application/geo+json`); the `dropped` row reads the latest positions while the"
        " bench deletes their entry 10 times a second, as the worker does while a fleet"
        " reports through OsmAnd (a batch per key every 0.1 s): each drop is a recompute"
        " (context, no bar).",
        "",
    ]
    text = "\n".join(lines) + _kept_profile(args.results)
    args.results.write_text(text)
    print(text)


def _kept_profile(results: Path) -> str:
    """The hand-written profile section of the results file, carried over to the new run."""
    old = results.read_text() if results.exists() else ""
    at = old.find(PROFILE_HEADING)
    return "\n" + old[at:] if at >= 0 else ""
