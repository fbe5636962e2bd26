"""The state directory of a local stack: created with the modes its servers need, and the
lock that lets one command at a time change what runs from it.

`up`, `down` and starting or stopping one component hold an exclusive flock on
`<state>/run/lock` (released by the kernel when the command exits, however it exits). A
second such command waits for the first, saying so once: two `make up` run one after the
other, the second finding everything running, instead of interleaving initdb, pg_ctl and
the migrations. `status` and `logs` change nothing and take no lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from milepost_devstack.config import STATE_DIR_VARIABLE, StackConfig
from milepost_devstack.errors import StackError


def unusable(config: StackConfig, error: OSError) -> StackError:
    """The one line for a state directory that is a file, or not writable or readable."""
    state = config.state_dir
    is_file = state.exists() and not state.is_dir()
    reason = "it is not a directory" if is_file else f"{error.strerror}: {error.filename}"
    return StackError(f"cannot use {state} as the state directory ({STATE_DIR_VARIABLE}): {reason}")


def prepare(config: StackConfig) -> None:
    """Create the state directory and its subdirectories (kept when they exist)."""
    state = config.state_dir
    try:
        state.mkdir(parents=True, exist_ok=True)
        # Root runs Postgres as `postgres`, which must traverse (not list) the directory.
        shared = 0o711 if os.geteuid() == 0 else 0o700
        state.chmod(shared)
        config.log_dir.mkdir(exist_ok=True)
        config.log_dir.chmod(shared)
        config.run_dir.mkdir(mode=0o700, exist_ok=True)
        (state / "beat").mkdir(mode=0o700, exist_ok=True)
    except OSError as error:
        raise unusable(config, error) from error


@contextmanager
def locked(config: StackConfig, report: Callable[[str], None]) -> Iterator[None]:
    """Hold the stack's lock for the body; wait (reporting it) while another command does."""
    prepare(config)
    # Not inherited by the processes started under the lock (os.open's descriptors are not).
    try:
        fd = os.open(config.run_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        raise unusable(config, error) from error
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report(f"waiting for another milepost-stack command on {config.state_dir} to end")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
