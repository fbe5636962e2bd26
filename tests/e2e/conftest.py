"""One real stack for the whole e2e session, started by the code path of `make up`.

Free loopback ports and a temporary state directory, so it runs next to a developer's own
`make up`. The inherited MILEPOST_* settings are dropped: the stack under test is configured
by this file only. At teardown the stack is stopped and no process may be left behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from milepost_devstack.config import Ports, StackConfig
from milepost_devstack.stack import Stack


def processes_using(directory: Path) -> list[str]:
    """`pid cmdline` of every process whose working directory or command line is in `directory`.

    Every process of the stack has one or the other: the apps, the worker and its children
    run in the state directory; Postgres in its data directory; Redis and Traefik name
    their configuration files there.
    """
    found = []
    needle = str(directory)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if cwd.startswith(needle) or needle in cmdline:
            found.append(f"{proc.name} {cmdline.strip()}")
    return found


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    # Under /tmp directly: pytest's own temp root is private to root, and Postgres runs as
    # the `postgres` user when the suite runs as root.
    state_dir = Path(tempfile.mkdtemp(prefix="milepost-e2e-"))
    environ = {key: value for key, value in os.environ.items() if not key.startswith("MILEPOST_")}
    # Locking an address out of login takes five times this many failed logins, each a full
    # argon2 check: kept low so that the test doing it stays short.
    environ["MILEPOST_AUTH__LOGIN_ATTEMPTS_PER_MINUTE"] = "2"
    # The journeys' webhook receiver listens on loopback (the api and the workers read it).
    environ["MILEPOST_WEBHOOKS__ALLOW_PRIVATE"] = "true"
    stack = Stack(StackConfig(state_dir, Ports.free(), durable=False), environ=environ)
    try:
        stack.up(timeout=240)
        yield stack
    finally:
        stack.down()
    leftovers = processes_using(state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)
    assert leftovers == [], "processes of the stack survived `down`"


@pytest.fixture(scope="session")
def gateway(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as client:
        yield client
