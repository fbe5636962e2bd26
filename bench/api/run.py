"""Public API benchmark: a vehicle's positions (``limit=100``), the fleet's latest positions
and the summary report, against a bare FastAPI endpoint returning a constant, in one run.

    uv run python -m bench.api [--vehicles 1000] [--days 30] [--interval-min 15]
                                   [--duration 8] [--connections 32] [--rounds 2]

The script runs everything it measures: a scratch database on the server of
MILEPOST_BENCH_DATABASE_URL or MILEPOST_TEST_DATABASE_URL (a role that may create databases;
else a throwaway local server), migrated, seeded with COPY (an organization, its owner,
``--vehicles`` vehicles with their latest state, ``--days`` of positions every
``--interval-min`` minutes per vehicle and four trips a day each); a throwaway Redis; the api
app (``milepost-api``: one uvicorn process, the per-user rate limit raised but still checked
on every request), the bare app (one uvicorn process, and a second on the apps' HTTP
protocol) and a raw socket server sending the summary's bytes (``bench.api.raw``) on their
own ports. The same ``wrk`` (Debian's) drives them all: one thread, the same connections and
duration, phases alternating over the rounds, the best round of each reported. Each
positions request asks for a random vehicle's first page of 100 fixes. Results are printed
and written to bench/api/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx
import redis

from bench.api.report import (
    BARE,
    BARE_APPS,
    DIRECT,
    HEALTH,
    LATEST,
    LATEST_BYTES,
    LATEST_CHURN,
    LATEST_GEOJSON,
    LATEST_GZIP,
    POSITIONS,
    SUMMARY,
    SUMMARY_BYTES,
    SUMMARY_GZIP,
    SUMMARY_RAW,
    Measure,
    figures,
    report,
)
from bench.api.seed import log, seed
from bench.support import (
    cpu_seconds,
    peak_rss_kib,
    scratch_database,
    stop,
    wait_ready,
    write_figures,
)
from milepost_common.auth import Realm, TokenCodec
from milepost_common.domain.positions import repository as position_repository
from milepost_common.live import latest_positions_key
from milepost_common.settings import AuthSettings, RedisSettings
from milepost_common.testing import services
from milepost_devstack.net import free_ports

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
JWT_KEYS = '{"bench": "milepost-bench-signing-key-000000000000000000"}'


def _postgrescpu_seconds() -> float:
    """CPU seconds of the bench's Postgres server: the postmaster with the backends it has
    reaped, and its live children (NaN when the server runs on another host)."""
    if POSTMASTER is None:
        return float("nan")
    total = cpu_seconds(POSTMASTER)
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"\nPPid:\t{POSTMASTER}\n" in status.read_text():
                total += cpu_seconds(int(status.parent.name))
        except OSError:
            continue
    return total


async def _postmaster_of(url: str) -> int | None:
    """The local postmaster serving ``url``: the parent of this connection's backend, read
    while the backend still exists."""
    conn = await asyncpg.connect(url)
    try:
        backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
        return await asyncio.to_thread(_parent_of, backend)
    finally:
        await conn.close()


def _parent_of(pid: int) -> int | None:
    """A local process's parent (for a backend: its postmaster); None if not on this host."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    ppid = re.search(r"^PPid:\t(\d+)$", status, re.MULTILINE)
    return int(ppid.group(1)) if ppid else None


# Set once the database is known; the CPU figures count only this server's processes.
POSTMASTER: int | None = None


# --- load --------------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _latency(output: str, percentile: str) -> float:
    match = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")


def _reaped_children_cpu_seconds() -> float:
    """User+system time of this process's children that have exited: wrk's, once reaped."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(
    name: str, script: Path, url: str, duration: int, connections: int, server_pid: int
) -> Measure:
    app_before, db_before = cpu_seconds(server_pid), _postgrescpu_seconds()
    client_before = _reaped_children_cpu_seconds()
    output = subprocess.run(
        [
            shutil.which("wrk") or "/usr/bin/wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout
    app_s, db_s = cpu_seconds(server_pid) - app_before, _postgrescpu_seconds() - db_before
    client_s = _reaped_children_cpu_seconds() - client_before
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    done = re.search(r"(\d+) requests in", output)
    requests = int(done.group(1)) if done else 0
    errors = sum(
        int(n)
        for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output)
        + re.findall(r"Non-2xx or 3xx responses: (\d+)", output)
    )
    return Measure(
        name,
        float(rps.group(1)) if rps else 0.0,
        _latency(output, "50"),
        _latency(output, "99"),
        errors,
        1e6 * app_s / requests if requests else float("nan"),
        1e6 * db_s / requests if requests else float("nan"),
        100 * client_s / duration,
    )


@contextmanager
def dropping(redis_url: str, key: str, per_second: float) -> Iterator[None]:
    """Delete ``key`` ``per_second`` times a second while the block runs: what the worker
    does to an organization's latest positions after each batch it processes for it."""
    client = redis.Redis.from_url(redis_url)
    done = threading.Event()

    def drop() -> None:
        while not done.wait(1 / per_second):
            client.delete(key)

    thread = threading.Thread(target=drop, name="bench-drop", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        client.close()


async def direct_history(
    url: str, org_id: uuid.UUID, vehicles: list[uuid.UUID], duration: int, connections: int
) -> Measure:
    """The positions query alone: the api's statement for a first page of 100, sent with
    asyncpg by ``connections`` tasks over a pool the api's size, generic plans as the api
    sets them — what Postgres can serve when no HTTP work is in the way."""
    statement = position_repository.history_statement(
        has_after=False, has_start=False, has_end=False, descending=False
    )
    pool = await asyncpg.create_pool(
        url,
        min_size=10,
        max_size=10,
        # A startup parameter, not a SET: the pool's RESET ALL on release would undo a SET.
        server_settings={"plan_cache_mode": "force_generic_plan"},
    )
    latencies: list[float] = []
    rnd = random.Random(5)
    deadline = time.monotonic() + duration

    async def client() -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            await pool.fetch(statement, rnd.choice(vehicles), org_id, 101)
            latencies.append(time.perf_counter() - started)

    try:
        app_before, db_before = time.process_time(), _postgrescpu_seconds()
        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(connections)))
        elapsed = time.monotonic() - started
        app_s, db_s = time.process_time() - app_before, _postgrescpu_seconds() - db_before
    finally:
        await pool.close()
    latencies.sort()
    n = len(latencies)
    return Measure(
        DIRECT,
        n / elapsed,
        1000 * latencies[n // 2],
        1000 * latencies[min(n - 1, int(n * 0.99))],
        0,
        1e6 * app_s / n,
        1e6 * db_s / n,
    )


def lua(
    work: Path,
    name: str,
    paths: list[str],
    token: str | None,
    *,
    gzip: bool = False,
    accept: str | None = None,
) -> Path:
    lines = ["local paths = {" + ",".join(f'"{p}"' for p in paths) + "}"]
    if token:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {token}"')
    if gzip:
        lines.append('wrk.headers["Accept-Encoding"] = "gzip"')
    if accept:
        lines.append(f'wrk.headers["Accept"] = "{accept}"')
    lines += [
        "request = function()",
        '  return wrk.format("GET", paths[math.random(#paths)])',
        "end",
    ]
    path = work / f"{name}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--interval-min", type=int, default=15)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--log-level",
        default="INFO",
        help="The api's log level; INFO writes one access-log line per request (the default).",
    )
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--figures", type=Path, help="also write the figures as JSON here")
    parser.add_argument(
        "--hold",
        action="store_true",
        help="After the warm-up, print the api's URL, pid and a token and keep everything"
        " running until interrupted (to profile the api under your own load).",
    )
    args = parser.parse_args()

    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="milepost-bench-api-") as tmp:
        work = Path(tmp)
        database_url = scratch_database(stack, "api", partition_days_back=args.days + 2)
        started = time.monotonic()
        seeded = asyncio.run(seed(database_url, args.vehicles, args.days, args.interval_min))
        global POSTMASTER  # one server for the whole run
        POSTMASTER = asyncio.run(_postmaster_of(database_url))
        seed_s = time.monotonic() - started
        log(f"seeded in {seed_s:.0f} s")
        redis_url = stack.enter_context(services.provide_redis())

        api_port, bare_port, bare_apps_port, raw_port = free_ports(4)
        env = {
            **os.environ,
            "MILEPOST_ENV": "local",
            "MILEPOST_LOG_LEVEL": args.log_level,
            "MILEPOST_DB__URL": database_url,
            "MILEPOST_DB__POOL_SIZE": "10",
            "MILEPOST_REDIS__URL": redis_url,
            "MILEPOST_AUTH__JWT_KEYS": JWT_KEYS,
            "MILEPOST_API__HOST": "127.0.0.1",
            "MILEPOST_API__PORT": str(api_port),
            "MILEPOST_API__RATE_LIMIT": "10000000/minute",
        }
        api_log = (work / "api.log").open("wb")
        stack.callback(api_log.close)
        api = subprocess.Popen(
            [shutil.which("milepost-api") or "milepost-api"],
            env=env,
            stdout=api_log,
            stderr=subprocess.STDOUT,
        )
        stack.callback(stop, api)
        bare, bare_apps = (
            subprocess.Popen([sys.executable, "-m", "bench.api.bare", str(port), *kind], cwd=ROOT)
            for port, kind in ((bare_port, []), (bare_apps_port, ["apps"]))
        )
        stack.callback(stop, bare)
        stack.callback(stop, bare_apps)
        raw = subprocess.Popen([sys.executable, "-m", "bench.api.raw", str(raw_port)], cwd=ROOT)
        stack.callback(stop, raw)
        api_base = f"http://127.0.0.1:{api_port}"
        bare_base = f"http://127.0.0.1:{bare_port}"
        bare_apps_base = f"http://127.0.0.1:{bare_apps_port}"
        raw_base = f"http://127.0.0.1:{raw_port}"
        wait_ready(f"{api_base}/api/ready")
        wait_ready(f"{bare_base}/bare")
        wait_ready(f"{bare_apps_base}/bare")
        wait_ready(f"{raw_base}/bytes/2")

        auth = AuthSettings.model_validate({"jwt_keys": {"bench": JWT_KEYS.split('"')[3]}})
        token, _ = TokenCodec(auth, Realm.API).issue(seeded.owner_id, Realm.API, 3600)
        headers = {"Authorization": f"Bearer {token}"}
        today = datetime.now(UTC).date()
        summary_path = f"/api/v1/reports/summary?from={today - timedelta(days=7)}&to={today}"
        position_paths = [f"/api/v1/vehicles/{v}/positions?limit=100" for v in seeded.vehicle_ids]
        # Warm up and check every target answers 200 before measuring.
        sizes: dict[str, int] = {}
        for path in (position_paths[0], "/api/v1/positions/latest", summary_path):
            started = time.monotonic()
            response = httpx.get(api_base + path, headers=headers, timeout=60)
            response.raise_for_status()
            sizes[path] = len(response.content)
            log(
                f"first {path.split('?')[0]}: {1000 * (time.monotonic() - started):.0f} ms,"
                f" {len(response.content):,} bytes"
            )
        if args.hold:
            hold(api, api_base, token, position_paths[0])
            return
        phases = {
            BARE: (lua(work, "bare", ["/bare"], None), bare_base, bare.pid),
            POSITIONS: (lua(work, "positions", position_paths, token), api_base, api.pid),
            LATEST: (
                lua(work, "latest", ["/api/v1/positions/latest"], token),
                api_base,
                api.pid,
            ),
            SUMMARY: (
                lua(work, "summary", [summary_path], token),
                api_base,
                api.pid,
            ),
            HEALTH: (lua(work, "health", ["/api/health"], None), api_base, api.pid),
            # Context, no bar: how much of the gap the apps' HTTP protocol closes by itself.
            BARE_APPS: (lua(work, "bare", ["/bare"], None), bare_apps_base, bare_apps.pid),
            # Context, no bar: the cached reads as browsers and most clients ask for them.
            LATEST_GZIP: (
                lua(work, "latest-gzip", ["/api/v1/positions/latest"], token, gzip=True),
                api_base,
                api.pid,
            ),
            SUMMARY_GZIP: (
                lua(work, "summary-gzip", [summary_path], token, gzip=True),
                api_base,
                api.pid,
            ),
            # Context, no bar: as a map asks for them.
            LATEST_GEOJSON: (
                lua(
                    work,
                    "latest-geojson",
                    ["/api/v1/positions/latest"],
                    token,
                    accept="application/geo+json",
                ),
                api_base,
                api.pid,
            ),
            # Context, no bar: what sending a cached read's bytes costs with nothing else.
            LATEST_BYTES: (
                lua(work, "latest-bytes", [f"/bytes/{sizes['/api/v1/positions/latest']}"], None),
                bare_base,
                bare.pid,
            ),
            SUMMARY_BYTES: (
                lua(work, "summary-bytes", [f"/bytes/{sizes[summary_path]}"], None),
                bare_base,
                bare.pid,
            ),
            SUMMARY_RAW: (
                lua(work, "summary-raw", [f"/bytes/{sizes[summary_path]}"], None),
                raw_base,
                raw.pid,
            ),
        }
        # Context, no bar: the latest positions while a fleet reports. OsmAnd fixes are
        # written a batch per key every 0.1 s (the ingest's linger), and the worker drops the
        # organization's entry after each: 10 drops a second.
        latest_key = latest_positions_key(seeded.org_id)
        cache_url = RedisSettings(url=redis_url).cache_url
        phases[LATEST_CHURN] = phases[LATEST]
        during: dict[str, Callable[[], AbstractContextManager[None]]] = {
            LATEST_CHURN: lambda: dropping(cache_url, latest_key, 10)
        }
        best: dict[str, Measure] = {}
        for round_ in range(args.rounds):
            measures = []
            for phase, (script, base, pid) in phases.items():
                with during.get(phase, nullcontext)():
                    measures.append(wrk(phase, script, base, args.duration, args.connections, pid))
            measures.append(
                asyncio.run(
                    direct_history(
                        database_url,
                        seeded.org_id,
                        seeded.vehicle_ids,
                        args.duration,
                        args.connections,
                    )
                )
            )
            for measure in measures:
                log(
                    f"round {round_ + 1} {measure.name}: {measure.rps:,.0f} req/s,"
                    f" p50 {measure.p50_ms:.2f} ms, p99 {measure.p99_ms:.2f} ms,"
                    f" errors {measure.errors}, CPU/request app {measure.app_cpu_us:.0f} µs"
                    f" db {measure.db_cpu_us:.0f} µs, wrk CPU {measure.client_cpu_pct:.0f} %"
                )
                if measure.name not in best or measure.rps > best[measure.name].rps:
                    best[measure.name] = measure
        report(args, seeded, seed_s, best)
        if args.figures:
            write_figures(args.figures, figures(best, {"api": peak_rss_kib(api.pid)}))


def hold(api: subprocess.Popen[bytes], base: str, token: str, path: str) -> None:
    log(f"holding: api pid {api.pid} at {base}, e.g. {path}")
    print(f"API={base} PID={api.pid} TOKEN={token} PATH_EXAMPLE={path}", flush=True)
    # SIGTERM too (a background job ignores SIGINT): unwind so everything is cleaned up.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        api.wait()
    except KeyboardInterrupt:
        log("stopping")


if __name__ == "__main__":
    main()
