"""The stack's Postgres judged by its postmaster, not by whatever process holds the pid of
its lock file: a stale postmaster.pid (after a reboot, a crash) is neither running nor
healthy, `up` replaces it, and `down` leaves that pid's process alone."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
from stack_support import alive, unrelated_process

from milepost_devstack.errors import ComponentError, StackError
from milepost_devstack.stack import Stack


@pytest.fixture
def stale_pidfile(real_stack: Stack) -> Iterator[int]:
    """An initialised, stopped cluster whose postmaster.pid names an unrelated process."""
    real_stack.start_component("postgres")
    real_stack.stop_component("postgres")
    with unrelated_process() as pid:
        data_dir = real_stack.postgres.data_dir
        (data_dir / "postmaster.pid").write_text(f"{pid}\n{data_dir}\n")
        yield pid


def postgres_status(stack: Stack) -> tuple[int | None, bool]:
    status = next(status for status in stack.status() if status.name == "postgres")
    return status.pid, status.healthy


class TestStalePidfile:
    def test_status_reports_postgres_stopped(self, real_stack: Stack, stale_pidfile: int) -> None:
        assert postgres_status(real_stack) == (None, False)

    def test_up_removes_it_with_one_line_and_starts_postgres(
        self, real_stack: Stack, stale_pidfile: int
    ) -> None:
        reported: list[str] = []
        stack = Stack(real_stack.config, report=reported.append)

        stack.start_component("postgres")

        assert f"removed postgres's stale postmaster.pid (pid {stale_pidfile} is not it)" in (
            reported
        )
        assert stack.postgres.accepts_connections()
        assert alive(stale_pidfile)
        stack.stop_component("postgres")

    def test_down_leaves_the_process_of_that_pid_alone(
        self, real_stack: Stack, stale_pidfile: int
    ) -> None:
        started = time.monotonic()

        stopped = real_stack.down()

        assert "postgres" not in stopped
        assert alive(stale_pidfile)
        assert time.monotonic() - started < 10


class TestStatus:
    def test_postgres_that_does_not_answer_is_unhealthy(self, real_stack: Stack) -> None:
        real_stack.start_component("postgres")
        pid = real_stack.postgres.pid()
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            status = postgres_status(real_stack)
        finally:
            os.kill(pid, signal.SIGCONT)

        assert status == (pid, False)


class TestDown:
    def test_stops_redis_when_stopping_postgres_fails(
        self, real_stack: Stack, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real_stack.start_component("redis")

        def fail() -> None:
            raise ComponentError("postgres: `pg_ctl stop` exited 1")

        monkeypatch.setattr(real_stack.postgres, "is_running", lambda: True)
        monkeypatch.setattr(real_stack.postgres, "stop", fail)
        with pytest.raises(StackError) as raised:
            real_stack.down()
        monkeypatch.undo()

        assert str(raised.value) == "postgres: `pg_ctl stop` exited 1\nstopped: redis"
        assert real_stack.processes.running("redis") is None


class TestLog:
    def test_a_log_over_50_mb_is_moved_aside_when_postgres_starts(self, real_stack: Stack) -> None:
        log = real_stack.postgres.log_path
        log.parent.mkdir(parents=True)
        with log.open("wb") as handle:  # sparse: as large as it says, at no cost
            handle.truncate(50 * 1024 * 1024 + 1)

        real_stack.start_component("postgres")

        assert log.with_name("postgres.log.1").stat().st_size == 50 * 1024 * 1024 + 1
        assert 0 < log.stat().st_size < 1024 * 1024
