"""The state directory: one changing command at a time, and its problems in one line."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from milepost_devstack.config import Ports, StackConfig
from milepost_devstack.net import wait_until
from milepost_devstack.stack import Stack


class TestLock:
    def test_second_command_waits_for_the_first_saying_so(self, state_dir: Path) -> None:
        config = StackConfig(state_dir, Ports.free())
        config.run_dir.mkdir()
        held = state_dir / "held"
        # util-linux's flock, as another `make up` would hold the lock.
        script = f"touch {held}; sleep 2"
        first = subprocess.Popen(["flock", str(config.run_dir / "lock"), "sh", "-c", script])
        wait_until(held.exists, timeout=10, what="the first command's lock")
        reported: list[str] = []
        started = time.monotonic()

        Stack(config, report=reported.append).down()

        waited = time.monotonic() - started
        first.wait()
        assert reported[0] == f"waiting for another milepost-stack command on {state_dir} to end"
        assert waited >= 1
