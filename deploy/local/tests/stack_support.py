"""Real stacks in tests: a port some other program holds, an unrelated process, and the
processes a stack left."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from milepost_devstack.net import LOOPBACK


@contextmanager
def occupied(port: int) -> Iterator[None]:
    """Another program listening on `port`, as a developer's other server would."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, port))
        sock.listen()
        yield


@contextmanager
def unrelated_process() -> Iterator[int]:
    """A process of nobody's stack, of the user a pidfile's owner would be (root runs
    Postgres as `postgres`): what a recorded pid is after a reboot. Yields its pid."""
    user = "postgres" if os.geteuid() == 0 else None
    process = subprocess.Popen(["sleep", "120"], user=user)
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for its reaper has finished running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"
