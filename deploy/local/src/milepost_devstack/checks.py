"""Waiting for several components at once: non-blocking checks polled in one loop.

Start-up is dominated by Python interpreters importing the apps; polling every check in one
loop lets them all boot in parallel, and a component that dies is reported at once instead
of after the whole timeout.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from milepost_devstack.errors import ComponentError
from milepost_devstack.process import append_text


@dataclass(frozen=True)
class Check:
    """`ready` must not block; `alive` False means the component died (no use waiting)."""

    component: str
    ready: Callable[[], bool]
    alive: Callable[[], bool]
    label: str = ""


def wait_all(
    checks: Sequence[Check],
    deadline: float,
    explain: Callable[[str, str], str],
    report: Callable[[str], None],
) -> None:
    """Return once every check is ready, reporting each; raise ComponentError (message from
    `explain(component, what happened)`) as soon as one component dies, or at `deadline`."""
    pending = list(checks)
    while pending:
        for check in list(pending):
            if check.ready():
                pending.remove(check)
                report(f"{check.label or check.component} ready")
            elif not check.alive():
                raise ComponentError(explain(check.component, "exited during start-up"))
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise ComponentError(explain(pending[0].component, "did not become healthy in time"))
        time.sleep(0.25)


@dataclass
class Command:
    """A one-shot command run in the background; output appended to `log` when it ends."""

    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    log: Path
    stdin: str = ""
    output: str = ""
    status: int | None = None
    _process: subprocess.Popen[str] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self._process is not None

    def start(self) -> Command:
        """(Re)start the command; `status` and `output` are reset."""
        self.status, self.output = None, ""
        self._process = subprocess.Popen(
            list(self.argv),
            cwd=self.cwd,
            env=dict(self.env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        # Small inputs only (a password line): the pipe buffer holds them without a reader.
        assert self._process.stdin is not None  # noqa: S101 - stdin=PIPE above
        self._process.stdin.write(self.stdin)
        self._process.stdin.close()
        return self

    def poll(self) -> int | None:
        """The exit status once the command has finished, else None (never started: None)."""
        if self._process is not None and self._process.poll() is not None:
            self.status = self._process.returncode
            self.output = self._finish()
            append_text(self.log, self.output)
        return self.status

    def stop(self) -> None:
        """Kill the command if it still runs (the caller gave up waiting for it)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._finish()

    def _finish(self) -> str:
        """Read what the exited process wrote and release it."""
        assert self._process is not None  # noqa: S101 - called while a process is held
        assert self._process.stdout is not None  # noqa: S101 - stdout=PIPE in start()
        with self._process.stdout as stdout:
            output = stdout.read()
        self._process = None
        return output


def succeeded(command: Command) -> Check:
    """Ready once `command` exited 0; dead if it exited otherwise."""
    return Check(
        command.log.stem,
        ready=lambda: command.poll() == 0,
        alive=lambda: command.poll() in (None, 0),
    )


def eventually_succeeds(command: Command) -> Callable[[], bool]:
    """A `ready` that (re)runs `command` until one run exits 0."""

    def ready() -> bool:
        if command.poll() == 0:
            return True
        if not command.running:
            command.start()
        return False

    return ready
