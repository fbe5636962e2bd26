"""milepost_common.testing.services: where the suite's Postgres and Redis come from.

Kept with the devstack's tests: the local fallback it chooses is this package's servers.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from milepost_common.testing import services
from milepost_devstack.redis import RedisServer

ALL_URL_VARIABLES = (*services.POSTGRES_URL_VARIABLES, *services.REDIS_URL_VARIABLES)


@pytest.fixture
def no_configured_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ALL_URL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def fake_daemon(path: Path, status_line: bytes) -> Iterator[None]:
    """A Unix-socket server answering every connection with `status_line`."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    def answer() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                connection.recv(1024)
                connection.sendall(status_line + b"\r\nContent-Length: 2\r\n\r\nOK")

    threading.Thread(target=answer, daemon=True).start()
    yield
    server.close()


@pytest.fixture
def answering_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    socket_path = tmp_path / "docker.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket_path}")
    yield from fake_daemon(socket_path, b"HTTP/1.1 200 OK")


@pytest.fixture
def failing_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    socket_path = tmp_path / "docker.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket_path}")
    yield from fake_daemon(socket_path, b"HTTP/1.1 500 Internal Server Error")


@pytest.fixture
def no_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'absent.sock'}")


class TestDockerDaemonAnswers:
    @pytest.mark.usefixtures("answering_daemon")
    def test_true_when_the_ping_answers_200(self) -> None:
        assert services.docker_daemon_answers()

    @pytest.mark.usefixtures("failing_daemon")
    def test_false_when_the_ping_fails(self) -> None:
        assert not services.docker_daemon_answers()

    @pytest.mark.usefixtures("no_daemon")
    def test_false_when_nothing_listens(self) -> None:
        assert not services.docker_daemon_answers()

    def test_false_for_transports_it_does_not_probe(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DOCKER_HOST", "ssh://builder@example.invalid")

        assert not services.docker_daemon_answers()


class TestProvide:
    @pytest.mark.usefixtures("no_configured_urls")
    def test_configured_url_is_used_as_given(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db.example.invalid:5432/x")
        monkeypatch.setenv("MILEPOST_TEST_REDIS_URL", "redis://cache.example.invalid:6379/0")

        with services.provide_postgres() as postgres, services.provide_redis() as redis:
            assert postgres == "postgresql://u:p@db.example.invalid:5432/x"
            assert redis == "redis://cache.example.invalid:6379/0"

    @pytest.mark.usefixtures("no_configured_urls", "no_daemon")
    def test_local_redis_without_docker_and_torn_down(self) -> None:
        with services.provide_redis() as url:
            server = RedisServer(Path("/nonexistent"), int(url.rsplit(":", 1)[1].split("/")[0]))
            assert server.ping()

        assert not server.ping()

    @pytest.mark.usefixtures("no_configured_urls", "no_daemon")
    def test_local_postgres_without_docker(self) -> None:
        with services.provide_postgres() as url:
            assert url.startswith("postgresql://postgres:")
            assert url.endswith("/postgres")
