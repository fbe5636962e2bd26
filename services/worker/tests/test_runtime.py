"""The per-child runtime: once the worker has terminated a child, a task's failure is SystemExit.

Celery terminates a child running a late-acked task when the broker connection is lost
(SIGTERM); billiard's handler raises SystemExit inside whatever runs, and asyncpg once turned
it into ``ValueError: not enough values to unpack`` that the batch task recorded as a failure.
The child runs in its own interpreter with billiard's real signal handling.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import os
    import signal

    from billiard.common import reset_signals

    from milepost_worker.runtime import Runtime
    from milepost_worker.settings import WorkerSettings

    async def failing() -> None:
        raise ValueError("a task's own error")

    async def terminated_inside_a_driver() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # what the worker sends a cancelled task
        except SystemExit:
            raise ValueError("not enough values to unpack (expected 3, got 0)") from None

    reset_signals()  # what billiard installs in every pool child
    settings = WorkerSettings.model_validate(
        {"env": "test", "db": {"url": "postgresql://milepost@127.0.0.1:1/never_connected"}}
    )
    runtime = Runtime(settings)
    for job in (failing, terminated_inside_a_driver):
        try:
            runtime.run(job())
        except BaseException as exc:
            print("outcome", type(exc).__name__, type(exc.__cause__).__name__)
    """
)


def test_a_failure_after_the_terminate_signal_is_system_exit() -> None:
    child = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=False
    )
    outcomes = [
        line.split()[1:] for line in child.stdout.splitlines() if line.startswith("outcome")
    ]
    assert outcomes == [["ValueError", "NoneType"], ["SystemExit", "ValueError"]], child.stderr
