"""PostgresServer: a cluster from Debian's binaries, run as `postgres` when root."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from milepost_devstack.errors import StackError
from milepost_devstack.net import free_port
from milepost_devstack.postgres import POSTGRES_BIN, PostgresServer, ephemeral_postgres


def can_log_in(url: str) -> bool:
    """Whether `url` (user, password, database) opens a session over TCP."""
    result = subprocess.run(
        [str(POSTGRES_BIN / "psql"), url, "-Atc", "SELECT 1"],
        capture_output=True,
        text=True,
        check=False,
        env={"PGCONNECT_TIMEOUT": "5"},
    )
    return result.stdout.strip() == "1"


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    # Not under pytest's base temp dir: that one is private to root, and the server runs
    # as `postgres` when the tests run as root.
    root = Path(tempfile.mkdtemp(prefix="milepost-pg-test-"))
    server = PostgresServer(root, free_port(), root / "postgres.log", durable=False)
    server.prepare()
    server.initdb(secrets.token_urlsafe(16))
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root)


class TestEnsureDatabase:
    def test_role_logs_in_with_its_password_only(self, server: PostgresServer) -> None:
        server.ensure_database("shop", "shopkeeper", "right-password")

        assert can_log_in(server.url("shopkeeper", "right-password", "shop"))
        assert not can_log_in(server.url("shopkeeper", "wrong-password", "shop"))

    def test_is_idempotent_and_updates_the_password(self, server: PostgresServer) -> None:
        server.ensure_database("again", "repeat", "first-password")

        server.ensure_database("again", "repeat", "second-password")

        assert can_log_in(server.url("repeat", "second-password", "again"))

    def test_rejects_unsafe_identifiers(self, server: PostgresServer) -> None:
        with pytest.raises(StackError, match="identifier"):
            server.ensure_database("x; DROP DATABASE postgres", "owner", "pw")


class TestLifecycle:
    def test_stop_then_start_keeps_data(self, server: PostgresServer) -> None:
        server.psql("CREATE TABLE IF NOT EXISTS kept (n int); INSERT INTO kept VALUES (42);")

        server.stop()
        assert not server.is_running()
        server.start()

        assert "42" in server.psql("SELECT n FROM kept;")

    def test_pid_is_the_postmaster(self, server: PostgresServer) -> None:
        pid = server.pid()

        assert pid is not None
        assert "postgres" in Path(f"/proc/{pid}/cmdline").read_bytes().decode()


class TestEphemeralPostgres:
    def test_yields_a_superuser_url_and_removes_everything(self) -> None:
        with ephemeral_postgres() as url:
            assert can_log_in(url)
            port = int(url.rsplit(":", 1)[1].split("/")[0])

        assert not can_log_in(url)
        assert port > 0
