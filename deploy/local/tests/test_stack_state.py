"""The state directory: one changing command at a time, and its problems in one line."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from milepost_devstack import cli
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


class TestStateDir:
    @pytest.mark.parametrize("command", ["up", "down", "status"])
    def test_a_file_is_refused_in_one_line(
        self,
        command: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        not_a_directory = tmp_path / "state"
        not_a_directory.write_text("")
        monkeypatch.setenv("MILEPOST_STATE_DIR", str(not_a_directory))

        assert cli.main([command]) == 1
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"milepost-stack: cannot use {not_a_directory} as the state directory "
            "(MILEPOST_STATE_DIR): it is not a directory"
        )


class TestPortSettings:
    @pytest.mark.parametrize(
        ("command", "first_line"), [("down", "nothing was running"), ("status", "redis ")]
    )
    def test_commands_binding_no_port_ignore_two_equal_ones(
        self,
        command: str,
        first_line: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.setenv("MILEPOST_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.setenv("MILEPOST_API__PORT", "18001")
        monkeypatch.setenv("MILEPOST_ADMIN__PORT", "18001")

        cli.main([command])

        assert capsys.readouterr().out.startswith(first_line)
