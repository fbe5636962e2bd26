"""ProcessManager: pidfiles that survive the starting command and never target a stranger."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from stack_support import alive

from milepost_devstack.errors import StackError
from milepost_devstack.net import wait_until
from milepost_devstack.process import ProcessManager, ProcessSpec, tail

# The documented limit over which a log is rotated when its process starts.
LOG_LIMIT = 50 * 1024 * 1024


@pytest.fixture
def processes(tmp_path: Path) -> ProcessManager:
    return ProcessManager(tmp_path / "run", tmp_path / "logs")


def sleeper(name: str, tmp_path: Path, script: str = "import time; time.sleep(60)") -> ProcessSpec:
    return ProcessSpec(name, [sys.executable, "-c", script], dict(os.environ), tmp_path)


class TestStart:
    def test_started_process_is_found_by_a_second_manager(
        self, processes: ProcessManager, tmp_path: Path
    ) -> None:
        record = processes.start(sleeper("one", tmp_path))
        try:
            again = ProcessManager(processes.run_dir, processes.log_dir).running("one")
        finally:
            processes.stop(["one"])

        assert again == record

    def test_output_goes_to_the_log(self, processes: ProcessManager, tmp_path: Path) -> None:
        processes.start(sleeper("talker", tmp_path, "print('hello from the child')"))

        wait_until(lambda: processes.running("talker") is None, timeout=10, what="talker exit")
        assert "hello from the child" in tail(processes.log_path("talker"), 5)

    def test_a_log_over_the_limit_is_kept_as_one_older_generation(
        self, processes: ProcessManager, tmp_path: Path
    ) -> None:
        log = processes.log_path("chatty")
        log.parent.mkdir(parents=True)
        log.with_name("chatty.log.1").write_text("the generation before\n")
        with log.open("wb") as handle:  # sparse: as large as it says, at no cost
            handle.truncate(LOG_LIMIT + 1)

        processes.start(sleeper("chatty", tmp_path, "print('after the restart')"))
        wait_until(lambda: processes.running("chatty") is None, timeout=10, what="chatty exit")

        assert log.with_name("chatty.log.1").stat().st_size == LOG_LIMIT + 1
        assert log.read_text() == "after the restart\n"


class TestRunning:
    def test_pidfile_of_a_reused_pid_is_not_ours(
        self, processes: ProcessManager, tmp_path: Path
    ) -> None:
        processes.run_dir.mkdir(parents=True)
        # This very test process, with another start time: what a recycled pid looks like.
        fake = {"pid": os.getpid(), "start_ticks": 1, "argv": ["gone"]}
        (processes.run_dir / "stranger.pid").write_text(json.dumps(fake))

        assert processes.running("stranger") is None
        assert processes.stop(["stranger"]) == []
        assert not (processes.run_dir / "stranger.pid").exists()

    def test_torn_pidfile_means_not_running(self, processes: ProcessManager) -> None:
        processes.run_dir.mkdir(parents=True)
        (processes.run_dir / "torn.pid").write_text('{"pid": ')

        assert processes.running("torn") is None


class TestStop:
    def test_stops_the_whole_process_group(self, processes: ProcessManager, tmp_path: Path) -> None:
        grandchild_pidfile = tmp_path / "grandchild.pid"
        script = (
            "import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            f"open({str(grandchild_pidfile)!r}, 'w').write(str(child.pid))\n"
            "time.sleep(60)\n"
        )
        processes.start(sleeper("parent", tmp_path, script))
        wait_until(
            lambda: grandchild_pidfile.exists() and grandchild_pidfile.read_text() != "",
            timeout=10,
            what="grandchild",
        )
        grandchild = int(grandchild_pidfile.read_text())

        assert processes.stop(["parent"]) == ["parent"]
        assert not alive(grandchild)

    def test_stops_the_children_its_exited_leader_left(
        self, processes: ProcessManager, tmp_path: Path
    ) -> None:
        child_pidfile = tmp_path / "child.pid"
        script = (
            "import subprocess, sys\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            f"open({str(child_pidfile)!r}, 'w').write(str(child.pid))\n"
        )
        record = processes.start(sleeper("leader", tmp_path, script))
        wait_until(lambda: not alive(record.pid), timeout=10, what="the leader's exit")
        child = int(child_pidfile.read_text())

        assert processes.stop(["leader"]) == ["leader"]
        assert not alive(child)

    @pytest.mark.parametrize("boot", [{"boot_id": "another-boot"}, {}])
    def test_leaves_alone_a_group_of_another_boot_with_the_recorded_pid(
        self, processes: ProcessManager, boot: dict[str, str]
    ) -> None:
        # A session whose leader exited, leaving a child in its group (as daemons do): what
        # a recorded pid may be after a reboot.
        leader = subprocess.run(
            ["bash", "-c", "sleep 901 >/dev/null 2>&1 & echo $!; echo $$"],
            start_new_session=True,
            capture_output=True,
            text=True,
            check=True,
        )
        child, pgid = map(int, leader.stdout.split())
        processes.run_dir.mkdir(parents=True)
        forged = {"pid": pgid, "start_ticks": 1, "argv": ["gone"], **boot}
        (processes.run_dir / "stranger.pid").write_text(json.dumps(forged))
        try:
            stopped = processes.stop(["stranger"], timeout=1)
            still_alive = alive(child)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)

        assert stopped == []
        assert still_alive

    def test_kills_what_ignores_sigterm(self, processes: ProcessManager, tmp_path: Path) -> None:
        script = (
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
        )
        record = processes.start(sleeper("stubborn", tmp_path, script))

        processes.stop(["stubborn"], timeout=0.5)

        assert not alive(record.pid)

    def test_refuses_to_start_twice(self, processes: ProcessManager, tmp_path: Path) -> None:
        processes.start(sleeper("once", tmp_path))
        try:
            with pytest.raises(StackError, match="already running"):
                processes.start(sleeper("once", tmp_path))
        finally:
            processes.stop(["once"])


class TestTail:
    def test_returns_the_last_lines(self, tmp_path: Path) -> None:
        log = tmp_path / "x.log"
        log.write_text("one\ntwo\nthree\n")

        assert tail(log, 2) == "two\nthree"

    def test_zero_lines_is_nothing(self, tmp_path: Path) -> None:
        log = tmp_path / "x.log"
        log.write_text("one\n")

        assert tail(log, 0) == ""

    def test_missing_file_is_nothing(self, tmp_path: Path) -> None:
        assert tail(tmp_path / "missing.log", 5) == ""
