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
from milepost_devstack.process import processes_in
from milepost_devstack.stack import Stack


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
    leftovers = processes_in(state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)
    assert leftovers == [], "processes of the stack survived `down`"


@pytest.fixture(scope="session")
def gateway(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as client:
        yield client
