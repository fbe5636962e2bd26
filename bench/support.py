"""What the benchmarks share: a migrated scratch database, the servers they start, CPU time,
peak memory, and their figures as JSON for `make bench`'s report (bench/report.py).

Imported as ``bench.support``: run the benchmarks as modules from the checkout's root
(``uv run python -m bench.api``, what ``make bench-*`` does).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from contextlib import ExitStack
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import make_url

from milepost_common.migrate import migrate
from milepost_common.testing import services
from milepost_devstack.net import http_status, wait_until

_TICK = os.sysconf("SC_CLK_TCK")


def log(bench: str, message: str) -> None:
    print(f"bench-{bench}: {message}", file=sys.stderr, flush=True)


def libpq(url: str) -> str:
    """The plain ``postgresql://`` form of a database URL (for asyncpg and libpq tools)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _execute(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def scratch_database(stack: ExitStack, bench: str, *, partition_days_back: int) -> str:
    """A new migrated database (libpq URL), dropped when ``stack`` closes, on the server of
    MILEPOST_BENCH_DATABASE_URL or MILEPOST_TEST_DATABASE_URL (a role that may create
    databases), else on a throwaway local server."""
    server = os.environ.get("MILEPOST_BENCH_DATABASE_URL") or os.environ.get(
        "MILEPOST_TEST_DATABASE_URL"
    )
    if not server:
        log(bench, "starting a throwaway Postgres")
        server = stack.enter_context(services.provide_postgres())
    admin = libpq(server)
    name = f"milepost_bench_{bench}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_execute(admin, f'CREATE DATABASE "{name}"'))
    stack.callback(
        lambda: asyncio.run(_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    )
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    asyncio.run(
        migrate(
            url.replace("postgresql://", "postgresql+asyncpg://", 1),
            partition_days_back=partition_days_back,
        )
    )
    return url


def wait_ready(url: str, timeout: float = 60.0) -> None:
    """Return once ``url`` answers 200; raise TimeoutError after ``timeout``."""
    wait_until(lambda: http_status(url) == 200, timeout=timeout, what=url)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process and its reaped children have used so far (0 once
    it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(ticks) for ticks in fields[11:15]) / _TICK


def peak_rss_kib(pid: int) -> int | None:
    """A live process's peak resident set size so far (VmHWM, KiB); None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def children(pid: int) -> list[int]:
    """The live direct children of a process (a Celery worker's prefork pool)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"\nPPid:\t{pid}\n" in status.read_text():
                found.append(int(status.parent.name))
        except OSError:
            continue
    return sorted(found)


def write_figures(path: Path, figures: dict[str, object]) -> None:
    """A benchmark's figures as JSON for `make bench`'s report (NaN, not measured, as null)."""

    def clean(value: object) -> object:
        if isinstance(value, float) and value != value:
            return None
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        return value

    path.write_text(json.dumps(clean(figures), indent=2) + "\n")
