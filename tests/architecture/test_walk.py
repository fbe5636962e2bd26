"""docs/architecture.md's walk (one batch pushed, processed, read back) against a trace of it.

The three steps run in-process, as the apps and a worker child run them: the ingest app and
the api app through ASGI, the worker through the Celery task's own body
(``tasks.ingest_batches.process.run``: Celery's tracer around it runs none of our code, the
worker connects no per-task signal) on a ``Runtime`` whose loop is the one the test's
connection belongs to. ``sys.setprofile`` (and ``threading.setprofile``, for the publisher's
thread) records the repository's source files in which a function ran during those steps only.
The document's numbered files, its bold narrow count and the paths its "broad" bullets name
are parsed, never copied here: a module that joins the path or leaves it fails this test.
"""

from __future__ import annotations

import asyncio
import math
import re
import sys
import threading
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_api.main import create_app as create_api
from milepost_api.settings import ApiSettings
from milepost_common.auth import Realm
from milepost_common.db import Database
from milepost_common.domain.devices.models import Device
from milepost_common.domain.users.models import OrgRole, User
from milepost_common.testing.factories import (
    make_api_key,
    make_device,
    make_organization,
    make_user,
)
from milepost_common.testing.plugin import app_client, token_codec
from milepost_ingest.main import create_app as create_ingest
from milepost_ingest.settings import IngestSettings
from milepost_worker import runtime as worker_runtime
from milepost_worker.runtime import Runtime, WorkerContext
from milepost_worker.settings import WorkerSettings
from milepost_worker.tasks.ingest_batches import process

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
SECTION = "## The walk: from an ingested batch to a public API read"
SOURCES = (ROOT / "libs/common/src", *sorted((ROOT / "services").glob("*/src")))
# The suite's stand-ins (TransactionReads for db.SessionReads) are not the walk's code.
TESTING = ROOT / "libs/common/src/milepost_common/testing"


@dataclass(frozen=True)
class Walk:
    narrow: list[str]
    narrow_count: int
    broad: list[str]

    def names(self, path: str) -> bool:
        """Listed as narrow, or named by a path suffix in the "broad" bullets."""
        return path in self.narrow or any(
            path == part or path.endswith("/" + part) for part in self.broad
        )


def read_walk(text: str) -> Walk:
    """The numbered files, the bold narrow count, and the ``.py`` paths of the bullets under
    'What "broad" adds'."""
    assert SECTION in text, f"no section {SECTION!r} in {DOC}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    count = re.search(r"^\| narrow \(above\) \| \*\*(\d+)\*\*", section, re.MULTILINE)
    adds = re.search(r'^What "broad" adds to the \d+:\n\n(.*?)(?:\n\n|\Z)', section, re.M | re.S)
    assert count, "no '| narrow (above) | **N** |' row in the counts table"
    assert adds, "no 'What \"broad\" adds to the N:' bullets"
    return Walk(
        narrow=re.findall(r"^\d+\. `([^`]+)`", section, re.MULTILINE),
        narrow_count=int(count[1]),
        broad=re.findall(r"`([\w/.]+\.py)`", adds[1]),
    )


class Trace:
    """Our source files in which a function ran, in the order first met, with the functions'
    names. Module bodies aside (first imports depend on which tests ran before), and on the
    loop only tasks created while recording (the steps' own, not what fixtures or earlier
    tests left running there)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.ran: dict[str, set[str]] = defaultdict(set)
        self._loop = loop
        self._thread = threading.get_ident()
        self._tasks: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
        self._prefixes = tuple(f"{source}/" for source in SOURCES)
        self._testing = f"{TESTING}/"
        self._on = False

    def _profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or not self._on:
            return
        code = frame.f_code
        name = code.co_filename
        if not name.startswith(self._prefixes) or name.startswith(self._testing):
            return
        if code.co_name == "<module>" or not self._ours():
            return
        self.ran[Path(name).relative_to(ROOT).as_posix()].add(code.co_qualname)

    def _ours(self) -> bool:
        if threading.get_ident() != self._thread:
            return True  # only threads started while recording have the hook
        task = asyncio.current_task(self._loop)
        return task is None or task in self._tasks

    def _task_factory(
        self, loop: asyncio.AbstractEventLoop, coro: Any, **options: Any
    ) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, **options)
        self._tasks.add(task)
        return task

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Threads started meanwhile are traced too (the publisher's pool starts on first use);
        one left running keeps the hook but records nothing once this ends."""
        profile, factory = sys.getprofile(), self._loop.get_task_factory()
        self._loop.set_task_factory(self._task_factory)
        threading.setprofile(self._profile)
        sys.setprofile(self._profile)
        self._on = True
        try:
            yield
        finally:
            self._on = False
            sys.setprofile(profile)
            threading.setprofile(None)
            self._loop.set_task_factory(factory)


class LoopRuntime(Runtime):
    """A worker child's runtime on the loop the test's connection belongs to (its own loop
    and engine would not see the test's transaction)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, context: WorkerContext) -> None:
        self.loop = loop
        self.context = context


@dataclass(frozen=True)
class Fleet:
    """An organization's vehicle, the secret of its API key, and a viewer."""

    device: Device
    key: str
    viewer: User


@pytest.fixture
async def fixture_loop() -> asyncio.AbstractEventLoop:
    """The loop the async fixtures ran on; the test drives it itself, as a worker child does."""
    return asyncio.get_running_loop()


@pytest.fixture
async def fleet(session: AsyncSession) -> Fleet:
    org = await make_organization(session)
    key = await make_api_key(session, org)
    viewer = await make_user(session, org, role=OrgRole.VIEWER)
    return Fleet(await make_device(session, org), key.secret, viewer)


@pytest.fixture
async def worker_context(
    database: Database, redis: Redis, settings_factory: Callable[..., Any]
) -> AsyncIterator[WorkerContext]:
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
        yield WorkerContext(settings_factory(WorkerSettings), database, redis, None, http)


@asynccontextmanager
async def served(app: FastAPI, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    """The app as a process serves after its first request: FastAPI builds an included
    router's routes when a request first passes them (once; ``DirectRoute`` is ours)."""
    async with app_client(app, database) as client:
        assert (await client.get("/not-served")).status_code == 404
        yield client


@pytest.fixture
async def ingest_client(
    database: Database, redis: Redis, settings_factory: Callable[..., Any]
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_factory(IngestSettings, ingest={"tune_gc": False})
    async with served(create_ingest(settings), database) as client:
        yield client


@pytest.fixture
async def api_client(
    database: Database, redis: Redis, settings_factory: Callable[..., Any]
) -> AsyncIterator[httpx.AsyncClient]:
    async with served(create_api(settings_factory(ApiSettings)), database) as client:
        yield client


def one_trip(device: Device) -> list[dict[str, Any]]:
    """40 fixes driving east 90 m every 10 s, then 15 standing at the end every 20 s: a trip of
    3.5 km that the standing fixes close. (The ingest and worker tests' builders live in their
    conftest and support modules, which pytest makes importable only once it loaded them.)"""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    degree_east_m = 111_195 * math.cos(math.radians(52.0))
    moving = [(10 * i, 90.0 * i, 32.4) for i in range(40)]
    standing = [(390 + 20 * i, 90.0 * 39, 0.0) for i in range(1, 16)]
    return [
        {
            "device_id": device.unique_id,
            "fix_time": (start + timedelta(seconds=t)).isoformat(),
            "lat": 52.0,
            "lon": 13.0 + east_m / degree_east_m,
            "speed": speed,
        }
        for t, east_m, speed in moving + standing
    ]


def walk_differences(walk: Walk, ran: dict[str, set[str]]) -> list[str]:
    """Every way the document and the trace disagree, so one failure shows them all."""
    differences = []
    if len(walk.narrow) != walk.narrow_count:
        differences.append(
            f"{len(walk.narrow)} numbered files, but the counts table says {walk.narrow_count}"
        )
    differences += [
        f"listed as narrow, but no function of it ran: {path}"
        for path in walk.narrow
        if path not in ran
    ]
    differences += [
        f"ran, but named neither narrow nor broad: {path} ({', '.join(sorted(functions))})"
        for path, functions in ran.items()
        if not walk.names(path)
    ]
    return differences


def test_the_walk_names_every_file_that_runs_and_only_those(
    fixture_loop: asyncio.AbstractEventLoop,
    fleet: Fleet,
    ingest_client: httpx.AsyncClient,
    api_client: httpx.AsyncClient,
    worker_context: WorkerContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sync, so that the task body can drive the loop as in a worker child."""
    walk = read_walk(DOC.read_text())
    trace = Trace(fixture_loop)
    items = one_trip(fleet.device)
    key = {"Authorization": f"Bearer {fleet.key}"}
    token, _ = token_codec().issue(fleet.viewer.id, Realm.API, 900)
    monkeypatch.setattr(worker_runtime, "_runtime", LoopRuntime(fixture_loop, worker_context))

    with trace.recording():
        pushed = fixture_loop.run_until_complete(
            ingest_client.post("/ingest/v1/positions", json={"positions": items}, headers=key)
        )
        assert pushed.status_code == 202, pushed.text
        process.run(str(pushed.json()["batch_id"]))
        read = fixture_loop.run_until_complete(
            api_client.get("/api/v1/trips", headers={"Authorization": f"Bearer {token}"})
        )

    assert pushed.json()["accepted"] == 55
    assert read.status_code == 200, read.text
    trips = [(t["vehicle_id"], t["end_time"] is not None) for t in read.json()["items"]]
    assert trips == [(str(fleet.device.id), True)]
    differences = walk_differences(walk, trace.ran)
    assert not differences, "the walk and its trace differ:\n" + "\n".join(differences)


def test_the_broad_bullets_name_files_that_exist() -> None:
    """A renamed or moved module must not stay in the list by matching nothing."""
    walk = read_walk(DOC.read_text())
    sources = [p.as_posix() for source in SOURCES for p in source.rglob("*.py")]
    unknown = [b for b in walk.broad if not any(s.endswith("/" + b) for s in sources)]
    assert walk.broad
    assert unknown == []
