"""A Redis server from Debian's `redis-server`, persistent (`make up`) or ephemeral (tests).

Configured as the broker needs it (ECOSYSTEM.md): `maxmemory-policy noeviction` so kombu's
keys are never evicted, AOF on so queued tasks survive a restart, bound to 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from milepost_devstack.errors import StackError
from milepost_devstack.net import LOOPBACK, free_port, wait_until
from milepost_devstack.process import ProcessManager, ProcessSpec

NAME = "redis"


def ensure_redis_installed() -> Path:
    """The path of `redis-server`, installing Debian's package first when missing and root.

    Raises StackError when it is missing and cannot be installed from here.
    """
    found = shutil.which("redis-server")
    if found is not None:
        return Path(found)
    if os.geteuid() != 0:
        raise StackError("redis-server is not installed: sudo apt-get install redis-server")
    print("milepost-stack: installing redis-server with apt-get", file=sys.stderr)
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"],
    ):
        if subprocess.run(argv, env=apt_env, check=False).returncode != 0:
            raise StackError(f"`{' '.join(argv)}` failed: install redis-server by hand")
    found = shutil.which("redis-server")
    if found is None:
        raise StackError("apt-get installed redis-server but it is not on PATH")
    return Path(found)


class RedisServer:
    """One redis-server with its config and data in `root`, on 127.0.0.1:`port`.

    `durable=False` keeps everything in memory only (throw-away test servers).
    """

    def __init__(self, root: Path, port: int, *, durable: bool = True) -> None:
        self.root = root
        self.port = port
        self.durable = durable

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def config_path(self) -> Path:
        return self.root / "redis.conf"

    def write_config(self) -> None:
        """(Re)write redis.conf for the current port; data files in `root` are kept."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        lines = [
            f"bind {LOOPBACK}",
            "protected-mode yes",
            f"port {self.port}",
            f'dir "{self.root}"',
            "daemonize no",
            'logfile ""',
            "maxmemory-policy noeviction",
        ]
        if self.durable:
            lines += ["appendonly yes", "appendfsync everysec"]
        else:
            lines += ["appendonly no", 'save ""']
        self.config_path.write_text("\n".join(lines) + "\n")

    def process_spec(self, env: Mapping[str, str]) -> ProcessSpec:
        """How to run this server in the foreground (its log goes to stdout)."""
        binary = ensure_redis_installed()
        self.write_config()
        return ProcessSpec(NAME, [str(binary), str(self.config_path)], env, self.root)

    def ping(self) -> bool:
        """Whether the server answers PING with PONG (not while it is still loading its AOF)."""
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


@contextmanager
def ephemeral_redis() -> Iterator[str]:
    """A fresh in-memory server on a free port; yields its redis:// URL (database 0).

    The server and its directory are removed on exit, also when the body raises.
    """
    with tempfile.TemporaryDirectory(prefix="milepost-redis-") as tmp:
        root = Path(tmp)
        server = RedisServer(root / "data", free_port(), durable=False)
        processes = ProcessManager(root / "run", root / "logs")
        processes.start(server.process_spec(os.environ))
        try:
            wait_until(server.ping, timeout=20, what=f"redis on port {server.port}")
            yield server.url
        finally:
            processes.stop([NAME])
