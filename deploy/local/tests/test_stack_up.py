"""`up` with real processes: what it refuses before starting anything, and what a failed
`up` leaves running (only what was running before it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from stack_support import occupied

from milepost_devstack import cli, postgres
from milepost_devstack.config import PORT_VARIABLES, Ports
from milepost_devstack.errors import StackError
from milepost_devstack.process import processes_in
from milepost_devstack.stack import Stack


class TestTakenPort:
    def test_fails_with_the_variable_to_change_before_anything_starts(
        self, state_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ports = Ports.free()
        for field, variable in PORT_VARIABLES.items():
            monkeypatch.setenv(variable, str(getattr(ports, field)))
        monkeypatch.setenv("MILEPOST_STATE_DIR", str(state_dir))

        with occupied(ports.gateway):
            status = cli.main(["up", "--timeout", "120"])

        assert status == 1
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"milepost-stack: cannot start traefik: port {ports.gateway} is taken by another "
            "process (choose another with MILEPOST_GATEWAY_PORT)"
        )
        assert processes_in(state_dir) == []

    def test_says_down_first_when_the_stack_is_partly_running(self, real_stack: Stack) -> None:
        stack, ports = real_stack, real_stack.config.ports
        stack.start_component("redis")

        with occupied(ports.gateway), pytest.raises(StackError) as raised:
            stack.up(timeout=120)

        assert str(raised.value) == (
            f"cannot start traefik: port {ports.gateway} is taken by another process (choose "
            "another with MILEPOST_GATEWAY_PORT after `make down`: running components keep "
            "the old ports)"
        )
        assert stack.processes.running("redis") is not None


class TestFailedUp:
    def test_stops_what_it_started(
        self, real_stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Redis starts, then Postgres cannot: its binaries are not where they are looked for.
        monkeypatch.setattr(postgres, "POSTGRES_BIN", tmp_path / "no-postgres")

        with pytest.raises(StackError, match="no Postgres binaries"):
            real_stack.up(timeout=60)

        assert real_stack.processes.running("redis") is None
        assert processes_in(real_stack.config.state_dir) == []
