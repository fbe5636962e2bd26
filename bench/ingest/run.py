"""Ingest benchmark: batches of realistic fixes pushed by concurrent clients through the gateway,
against the same number of rows written straight into ``positions`` with asyncpg — with the
app's own dedupe statement (the unavoidable database work), with plain COPY (the floor), and
with COPY into a staging table followed by the same conflict-skipping insert (the write-path
alternative the app was measured against).

    uv run python -m bench.ingest [--clients 4] [--duration 10] [--rounds 2]
    uv run python -m bench.ingest --stack            # the running `make up` stack
    uv run python -m bench.ingest --base-url http://127.0.0.1:8080 --database-url postgres://…

Without ``--stack`` or ``--base-url`` the script runs its own small stack: a scratch database
on the server of MILEPOST_BENCH_DATABASE_URL or MILEPOST_TEST_DATABASE_URL (a role that may
create databases; else a throwaway local server), a throwaway Redis, the ingest app
(``milepost-ingest``, one uvicorn process) and Traefik on the committed gateway
configuration. Nothing else runs there (no worker competing for the two cores). The load
client is Debian's ``wrk`` with ``push.lua``; each batch is sent once. Phases alternate over
the rounds and the best round of each is reported. The bench organization's ingest rate
limit and the edge rate limit are raised for the run. Results are printed and written to
bench/ingest/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import subprocess
import tempfile
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.ingest.direct import PhaseResult, direct_copy, direct_dedupe, direct_unnest, staging_copy
from bench.ingest.fleet import VEHICLES_PER_BATCH, Batch, Fleet, TimeSlots
from bench.ingest.target import (
    PARTITION_DAYS,
    Seed,
    Target,
    log,
    machine_busy,
    own_stack,
    running_stack,
    seed,
)
from bench.support import (
    cpu_seconds,
    libpq,
    peak_rss_kib,
    write_figures,
)

HERE = Path(__file__).resolve().parent
LUA = HERE / "push.lua"


def gateway(
    target: Target,
    seed_: Seed,
    batches: list[Batch],
    clients: int,
    duration: int,
    work: Path,
    *,
    warm_up: bool = False,
) -> PhaseResult:
    """wrk with `clients` connections over 2 threads; each batch is sent at most once."""
    threads = min(2, clients)
    per_thread = len(batches) // threads
    phase_dir = Path(tempfile.mkdtemp(prefix="phase-", dir=work))
    for index, batch in enumerate(batches[: per_thread * threads]):
        (phase_dir / f"{index % threads}-{index // threads}.json").write_bytes(batch.body)
    env = {
        **os.environ,
        "BENCH_DIR": str(phase_dir),
        "BENCH_KEY": seed_.key,
        "BENCH_FILES": str(per_thread),
    }
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{clients}",
        f"-d{duration}s",
        "--timeout",
        "30s",
        "--latency",
        "-s",
        str(LUA),
        target.base_url,
    ]
    before = {name: cpu_seconds(pid) for name, pid in target.pids.items()}
    busy = machine_busy()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in target.pids.items()}
    cpu["whole machine"] = machine_busy() - busy
    shutil.rmtree(phase_dir, ignore_errors=True)
    line = next(line for line in out.splitlines() if line.startswith("BENCH "))
    stats = json.loads(line.removeprefix("BENCH "))
    if not warm_up and (stats["wrapped"] or stats["failed"] or stats["errors"]):
        log(f"warning: gateway phase {stats} (wrapped = batches sent twice: more --pool)")
    fixes = stats["accepted"] + stats["duplicates"] + stats["rejected"]
    return PhaseResult(
        "ingest through the gateway (wrk, HTTP, JSON)",
        fixes,
        stats["duration_us"] / 1e6,
        p50_ms=stats["p50_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        extra={**stats, "cpu": cpu},
    )


# --- the run ---------------------------------------------------------------------------------


def machine() -> str:
    load = os.getloadavg()[0]
    return f"{os.cpu_count()} cores, load average {load:.1f} at the start, shared with other work"


def run(args: argparse.Namespace) -> dict[str, Any]:
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ingest-")))
        if args.base_url:
            if not args.database_url:
                raise SystemExit("bench-ingest: --base-url needs --database-url")
            target = Target(
                "the stack at --base-url", args.base_url.rstrip("/"), libpq(args.database_url)
            )
        elif args.stack:
            target = running_stack()
        else:
            target = own_stack(stack, work)
        log(f"target: {target.mode} at {target.base_url}")
        seed_ = asyncio.run(
            seed(target.database_url.replace("postgresql://", "postgresql+asyncpg://", 1))
        )
        fleet = Fleet(seed_.devices)
        slots = TimeSlots(PARTITION_DAYS)
        size = args.batch
        # Warm-up: connections, caches, JIT of the code paths; not measured.
        warm = fleet.batches(4, slots.take(4, size), size, body=False)
        asyncio.run(direct_dedupe(target, seed_, warm, 2))
        gateway(
            target,
            seed_,
            fleet.batches(4, slots.take(4, size), size, body=True),
            2,
            1,
            work,
            warm_up=True,
        )

        results: dict[str, list[PhaseResult]] = {}
        for round_ in range(1, args.rounds + 1):
            count = args.direct_batches
            rows = fleet.batches(count, slots.take(count, size), size, body=False)
            direct = asyncio.run(direct_dedupe(target, seed_, rows, args.clients))
            log(f"round {round_}: {direct.name}: {direct.rate:,.0f} fixes/s")
            results.setdefault("dedupe", []).append(direct)
            # Enough distinct batches for the gateway phase to never send one twice.
            pool = max(args.clients * 4, math.ceil(direct.rate * args.duration * 1.5 / size))
            bodies = fleet.batches(pool, slots.take(pool, size), size, body=True)
            pushed = gateway(target, seed_, bodies, args.clients, args.duration, work)
            del bodies
            log(f"round {round_}: {pushed.name}: {pushed.rate:,.0f} fixes/s")
            results.setdefault("gateway", []).append(pushed)
            for key, phase in (
                ("unnest", direct_unnest),
                ("staging", staging_copy),
                ("copy", direct_copy),
            ):
                rows = fleet.batches(count, slots.take(count, size), size, body=False)
                outcome = asyncio.run(phase(target, seed_, rows, args.clients))
                log(f"round {round_}: {outcome.name}: {outcome.rate:,.0f} fixes/s")
                results.setdefault(key, []).append(outcome)
        best = {key: max(runs, key=lambda r: r.rate) for key, runs in results.items()}
        # Read before the ExitStack stops them (empty when pushing to a stack not ours).
        rss = {name: peak_rss_kib(pid) for name, pid in target.pids.items()}
    return {"target": target, "best": best, "all": results, "args": args, "rss": rss}


WRITE_PATH_NOTE = (
    "Write path: the app sends a batch's fixes as one JSON array parameter "
    "(`jsonb_array_elements`, then `INSERT … ON CONFLICT DO NOTHING` in the same statement as "
    "the batch's counts). Measured against nine typed arrays for `unnest` and against COPY "
    "into a staging table: Postgres does about the same work for all three (within a few "
    "percent when the phases are interleaved; single phases swing far more with the "
    "machine's other load), while the writer's CPU (last column) is lowest for the JSON "
    "array — and the single-process app, not Postgres, is what limits ingest on two cores. "
    "COPY also needs a raw driver connection and three statements. The ratio is given "
    "against the app's statement (the target's definition) and against the fastest direct "
    "dedupe path of the run."
)


def report(outcome: dict[str, Any], started: datetime, machine_line: str) -> str:
    best: dict[str, PhaseResult] = outcome["best"]
    args = outcome["args"]
    target: Target = outcome["target"]
    dedupe = best["dedupe"].rate
    lines = [
        "# Ingest benchmark",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC on this machine ({machine_line}), by "
        "`make bench-ingest` (`bench/ingest/run.py`).",
        "",
        f"Target: {target.mode}. {args.clients} concurrent clients, batches of {args.batch} "
        f"fixes ({VEHICLES_PER_BATCH} vehicles x {args.batch // VEHICLES_PER_BATCH} fixes "
        "5 s apart, "
        "with speed, course, altitude, accuracy and ignition/battery/odometer attributes). "
        f"Best of {args.rounds} alternating rounds per path; every row written is new "
        "(each path gets its own stretch of time).",
        "",
        "| path | fixes/s | x dedupe write | p50 ms | p99 ms | CPU ms / 1,000 fixes: "
        "machine | writer |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key in ("gateway", "dedupe", "unnest", "staging", "copy"):
        result = best[key]
        p50, p99 = result.percentiles()
        cpu = result.extra["cpu"]
        machine_ms = cpu["whole machine"] * 1e6 / result.fixes
        writer = cpu.get("writer", cpu.get("ingest app"))
        writer_ms = f"{writer * 1e6 / result.fixes:.1f}" if writer is not None else "-"
        lines.append(
            f"| {result.name} | {result.rate:,.0f} | {result.rate / dedupe:.2f} | "
            f"{p50:.1f} | {p99:.1f} | {machine_ms:.1f} | {writer_ms} |"
        )
    ratio = best["gateway"].rate / dedupe
    fastest = max((best[k] for k in ("dedupe", "unnest", "staging")), key=lambda r: r.rate)
    gateway_cpu = best["gateway"].extra["cpu"]
    split = ", ".join(
        f"{name} {seconds * 1e6 / best['gateway'].fixes:.1f} ms"
        for name, seconds in gateway_cpu.items()
        if name != "whole machine"
    )
    lines += [
        "",
        f"Ingest through the gateway / direct write with the app's statement: **{ratio:.2f}** "
        f"(target >= 0.5); / the fastest direct dedupe path ({fastest.name}): "
        f"**{best['gateway'].rate / fastest.rate:.2f}**.",
        "",
        f"CPU per 1,000 fixes through the gateway: {split or 'not measured (not our processes)'}"
        " (the rest: Postgres, wrk, Redis and whatever else ran on the machine).",
    ]
    lines += [
        "",
        "Latencies: the gateway's are per HTTP request as wrk measured them (the 202 comes "
        "after the commit and the publish); the direct paths' are per transaction of one batch. "
        "CPU: `machine` is every core's busy time during the phase (Postgres included) per "
        "1,000 fixes; `writer` is the process that sends the rows (the ingest app through the "
        "gateway, the benchmark's own asyncpg client for the direct paths).",
        "",
        "All rounds (fixes/s):",
        "",
    ]
    for runs in outcome["all"].values():
        lines.append(f"- {runs[0].name}: " + ", ".join(f"{r.rate:,.0f}" for r in runs))
    lines += ["", WRITE_PATH_NOTE, "", *target.notes]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients / connections")
    parser.add_argument("--batch", type=int, default=1000, help="fixes per batch")
    parser.add_argument("--duration", type=int, default=10, help="seconds of the gateway phase")
    parser.add_argument("--direct-batches", type=int, default=120, help="batches per direct phase")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stack", action="store_true", help="push to the running local stack")
    parser.add_argument("--base-url", help="gateway (or ingest app) base URL to push to")
    parser.add_argument("--database-url", help="that stack's database (with --base-url)")
    parser.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--figures", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit(
            "bench-ingest: wrk is missing (apt-get install wrk, or make system-packages)"
        )
    started = datetime.now(UTC)
    machine_line = machine()
    outcome = run(args)
    text = report(outcome, started, machine_line)
    print(text)
    if args.figures:
        write_figures(args.figures, figures(outcome))
    if not args.no_write:
        results = HERE / "RESULTS.md"
        history = _history(results.read_text() if results.exists() else "")
        history.insert(0, _headline(outcome, started, machine_line))
        results.write_text(text + f"\n{HISTORY}\n\n" + "\n".join(history) + "\n")


def figures(outcome: dict[str, Any]) -> dict[str, object]:
    """The best round's fixes/s by path (gateway, dedupe, unnest, staging, copy), the
    target, and the peak RSS (KiB) of the processes it started."""
    return {
        "target": outcome["target"].mode,
        "fixes_per_s": {key: result.rate for key, result in outcome["best"].items()},
        "peak_rss_kib": outcome["rss"],
    }


HISTORY = "## Every run so far (the machine is shared: its load moves the figures)"


def _history(previous: str) -> list[str]:
    if HISTORY not in previous:
        return []
    return [line for line in previous.split(HISTORY, 1)[1].splitlines() if line.startswith("- ")]


def _headline(outcome: dict[str, Any], started: datetime, machine_line: str) -> str:
    best: dict[str, PhaseResult] = outcome["best"]
    fastest = max((best[k] for k in ("dedupe", "unnest", "staging")), key=lambda r: r.rate)
    load = machine_line.split("load average ", 1)[1].split(" ", 1)[0]
    return (
        f"- {started:%Y-%m-%d %H:%M} UTC, load {load}: gateway {best['gateway'].rate:,.0f} "
        f"fixes/s, app's statement {best['dedupe'].rate:,.0f}, ratio "
        f"**{best['gateway'].rate / best['dedupe'].rate:.2f}** "
        f"(vs fastest dedupe path {best['gateway'].rate / fastest.rate:.2f})"
    )


if __name__ == "__main__":
    main()
