"""RedisServer: a broker-safe configuration (noeviction, AOF) from Debian's redis-server."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from milepost_devstack.net import LOOPBACK, free_port, wait_until
from milepost_devstack.process import ProcessManager
from milepost_devstack.redis import NAME, RedisServer, ephemeral_redis


def config_get(port: int, key: str) -> str:
    """CONFIG GET `key` over RESP: the reply is *2, then the key and the value as bulk strings."""
    with socket.create_connection((LOOPBACK, port), timeout=2) as sock:
        sock.sendall(f"CONFIG GET {key}\r\n".encode())
        reply = b""
        while reply.count(b"\r\n") < 5:
            reply += sock.recv(256)
    return reply.split(b"\r\n")[4].decode()


class TestRedisServer:
    def test_durable_server_keeps_the_broker_safe(self, tmp_path: Path) -> None:
        server = RedisServer(tmp_path / "data", free_port())
        processes = ProcessManager(tmp_path / "run", tmp_path / "logs")
        processes.start(server.process_spec(os.environ))
        try:
            wait_until(server.ping, timeout=20, what="redis")
            settings = {
                key: config_get(server.port, key)
                for key in ("maxmemory-policy", "appendonly", "bind")
            }
        finally:
            processes.stop([NAME])

        assert settings == {"maxmemory-policy": "noeviction", "appendonly": "yes", "bind": LOOPBACK}

    def test_ping_is_false_without_a_server(self, tmp_path: Path) -> None:
        assert not RedisServer(tmp_path, free_port()).ping()


class TestEphemeralRedis:
    def test_yields_a_url_and_stops_the_server(self) -> None:
        with ephemeral_redis() as url:
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            assert RedisServer(Path("/nonexistent"), port).ping()

        assert not RedisServer(Path("/nonexistent"), port).ping()
