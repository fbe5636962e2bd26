"""Real processes for the worker tests: a redis-server that can restart, ``milepost-worker``
(prefork, so fork and worker_process_init are real) and ``milepost-beat`` as subprocesses."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis import Redis

from milepost_common.db import Database, create_database
from milepost_common.settings import DbSettings
from milepost_common.tasks import Publisher
from milepost_worker import health
from milepost_worker.settings import WorkerSettings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """redis-server on a free port, AOF on and no eviction (as the broker needs)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is required"
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.root),
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--save",
                    "",
                    "--maxmemory-policy",
                    "noeviction",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


class CeleryProcess:
    """``milepost-worker`` or ``milepost-beat`` in its own process group (killable as a whole)."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL the main process and its prefork children at once."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)
            self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None

    @property
    def node_name(self) -> str:
        """The node's name as Celery expands ``--hostname`` (``%h``: this host's name)."""
        return self.argv[self.argv.index("--hostname") + 1].replace("%h", socket.gethostname())

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


class WorkerStack:
    """A database, a Redis and the worker's environment; starts workers and beats on them."""

    def __init__(
        self,
        db_url: str,
        redis: RedisProcess,
        webhooks: dict[str, Any] | None = None,
        **worker: Any,
    ) -> None:
        self.db_url = db_url
        self.redis = redis
        self.tmp = Path(tempfile.mkdtemp(prefix="milepost-worker-test-"))
        self.metrics_port = free_port()
        settings = {
            "task_time_limit_s": 30,
            "task_soft_time_limit_s": 25,
            "retry_backoff_base_s": 0.2,
            "retry_backoff_max_s": 2,
            "webhook_backoff_base_s": 0.3,
            "webhook_claim_s": 40,
            "reconcile_interval_s": 1,
            "reconcile_pending_after_s": 1,
            "batch_lease_s": 3,
            "batch_lease_renew_s": 1,
            "heartbeat_interval_s": 1,
            "soft_shutdown_timeout_s": 2,
            "metrics_port": self.metrics_port,
            **worker,
        }
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MILEPOST_")},
            "MILEPOST_ENV": "test",
            "MILEPOST_LOG_LEVEL": "INFO",
            "MILEPOST_DB__URL": db_url,
            "MILEPOST_DB__POOL_SIZE": "3",
            "MILEPOST_REDIS__URL": redis.url,
            "MILEPOST_REDIS__CACHE_DB": "1",
            "MILEPOST_CELERY__VISIBILITY_TIMEOUT_S": "60",
            **{f"MILEPOST_WORKER__{k.upper()}": str(v) for k, v in settings.items()},
            **{
                f"MILEPOST_WEBHOOKS__{k.upper()}": str(v)
                for k, v in {"allow_private": "true", **(webhooks or {})}.items()
            },
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.settings = WorkerSettings.model_validate(
            {
                "env": "test",
                "db": {"url": db_url},
                "redis": {"url": redis.url, "cache_db": 1},
                "celery": {"visibility_timeout_s": 60},
                "worker": {
                    "task_time_limit_s": 30,
                    "task_soft_time_limit_s": 25,
                    "retry_backoff_max_s": 2,
                },
            }
        )
        self.publisher = Publisher(self.settings.redis, self.settings.celery)
        self.db: Database = create_database(DbSettings(url=db_url, pool_size=3))
        self.processes: list[CeleryProcess] = []

    def worker(
        self, concurrency: int = 2, queues: str | None = None, name: str | None = None
    ) -> CeleryProcess:
        """A worker on ``queues`` (else the default ones: all but webhooks), its node named
        ``name@<host>`` (else ``test<n>``; ``node_name`` says it whole)."""
        process = CeleryProcess(
            [
                "milepost-worker",
                "--concurrency",
                str(concurrency),
                "--loglevel",
                "INFO",
                "--hostname",
                f"{name or f'test{len(self.processes)}'}@%h",
                *(["--queues", queues] if queues else []),
            ],
            # Only the first worker serves metrics (on ``metrics_port``).
            self.env | ({"MILEPOST_WORKER__METRICS_PORT": "0"} if self._has_worker() else {}),
            self.tmp / f"worker{len(self.processes)}.log",
        )
        process.start()
        self.processes.append(process)
        return process

    def _has_worker(self) -> bool:
        return any(p.argv[0] == "milepost-worker" for p in self.processes)

    def beat(self) -> CeleryProcess:
        process = CeleryProcess(
            ["milepost-beat", "--schedule", str(self.tmp / "beat-schedule")],
            self.env,
            self.tmp / "beat.log",
        )
        process.start()
        self.processes.append(process)
        return process

    def ping(self, timeout_s: float = 30.0, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["milepost-worker-ping", "--timeout", str(timeout_s), *extra],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s + 30,
            check=False,
        )

    def consumed_ping(self, timeout_s: float = 30.0, queue: str | None = None) -> bool:
        """In-process version of ``milepost-worker-ping`` (no interpreter start-up)."""
        with Redis.from_url(self.settings.redis.cache_url) as cache:
            return health.send_ping(self.publisher, cache, timeout_s, queue=queue)[0]

    def liveness(self, node: str | None, timeout_s: float) -> subprocess.CompletedProcess[str]:
        """``milepost-worker-ping --liveness``, as a node's probe runs it (``node``: the
        probe's default, this host's ``celery@`` node)."""
        return self.ping(timeout_s, "--liveness", *(["--node", node] if node else []))

    def send(self, name: str, *args: Any) -> None:
        self.publisher.send_blocking(name, *args)

    def metric(self, sample: str) -> float:
        """A sample of the running worker's metrics (``name{labels}`` as exposed), 0 if absent."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith(sample + " "):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    async def close(self) -> None:
        for process in self.processes:
            process.stop()
        self.publisher.close()
        await self.db.dispose()
        shutil.rmtree(self.tmp, ignore_errors=True)


async def eventually(
    check: Callable[[], Awaitable[bool]],
    timeout_s: float = 30.0,
    interval_s: float = 0.1,
    what: str = "condition",
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(interval_s)
    raise AssertionError(f"timed out waiting for {what}")
