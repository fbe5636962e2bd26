"""Stack: the environment every process of the stack gets, and `status` of a stopped stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from milepost_devstack import cli
from milepost_devstack.config import Ports, StackConfig
from milepost_devstack.stack import Stack

PORTS = Ports(
    gateway=18080,
    gateway_metrics=18090,
    api=18001,
    admin=18002,
    ingest=18003,
    worker_metrics=19101,
    postgres=15432,
    redis=16379,
)


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    inherited = {
        "PATH": "/usr/bin",
        "DATABASE_URL": "postgresql://elsewhere/db",
        "MILEPOST_BOOTSTRAP_PASSWORD": "not-for-the-apps",
    }
    return Stack(StackConfig(tmp_path / "state", PORTS), environ=inherited)


class TestProcessEnv:
    def test_points_every_process_at_the_stack(self, stack: Stack) -> None:
        env = stack.process_env(stack.credentials())

        assert env["MILEPOST_DB__URL"].startswith("postgresql+asyncpg://milepost:")
        assert env["MILEPOST_DB__URL"].endswith("@127.0.0.1:15432/milepost")
        assert env["MILEPOST_REDIS__URL"] == "redis://127.0.0.1:16379/0"
        assert (env["MILEPOST_API__HOST"], env["MILEPOST_API__PORT"]) == ("127.0.0.1", "18001")
        assert env["MILEPOST_WORKER__METRICS_PORT"] == "19101"
        assert env["MILEPOST_ENV"] == "local"

    def test_links_start_at_the_gateway(self, stack: Stack, tmp_path: Path) -> None:
        env = stack.process_env(stack.credentials())
        public = {"MILEPOST_API__PUBLIC_URL": "https://fleet.example"}
        configured = Stack(StackConfig(tmp_path / "other", PORTS), environ=public)

        assert env["MILEPOST_API__PUBLIC_URL"] == "http://127.0.0.1:18080"
        assert env["MILEPOST_ADMIN__PUBLIC_URL"] == "http://127.0.0.1:18080"
        own = configured.process_env(configured.credentials())
        assert own["MILEPOST_API__PUBLIC_URL"] == "https://fleet.example"

    def test_carries_the_generated_secrets(self, stack: Stack) -> None:
        credentials = stack.credentials()

        env = stack.process_env(credentials)

        assert credentials.app_env().items() <= env.items()

    def test_drops_inherited_variables_that_would_override_the_stack(self, stack: Stack) -> None:
        env = stack.process_env(stack.credentials())

        assert "DATABASE_URL" not in env
        assert "MILEPOST_BOOTSTRAP_PASSWORD" not in env
        assert env["PATH"] == "/usr/bin"


class TestStatus:
    def test_stopped_stack_reports_every_component_stopped(self, stack: Stack) -> None:
        statuses = stack.status()

        assert [status.name for status in statuses] == [
            "redis",
            "postgres",
            "api",
            "admin",
            "ingest",
            "worker",
            "worker-webhooks",
            "beat",
            "traefik",
        ]
        assert all(status.pid is None and not status.healthy for status in statuses)

    def test_cli_status_exits_1_when_stopped(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("MILEPOST_STATE_DIR", str(tmp_path / "state"))

        assert cli.main(["status"]) == 1
        assert "stopped" in capsys.readouterr().out
