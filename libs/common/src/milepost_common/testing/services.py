"""Where the test suite's Postgres and Redis come from, in order of preference.

1. An explicit URL: MILEPOST_TEST_DATABASE_URL / DATABASE_URL, MILEPOST_TEST_REDIS_URL /
   REDIS_URL. Used as given and left alone afterwards.
2. Containers (testcontainers) when a Docker daemon answers a ping. An installed Docker
   client or a socket file alone is not enough: CI machines often have both and no daemon.
3. Local binaries on free loopback ports in temporary directories (milepost_devstack, the
   same code `make up` runs; Postgres through `runuser -u postgres` when root).

Containers and local servers are torn down when the context exits, also on error.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from milepost_devstack.postgres import ephemeral_postgres
from milepost_devstack.redis import ephemeral_redis

POSTGRES_URL_VARIABLES = ("MILEPOST_TEST_DATABASE_URL", "DATABASE_URL")
REDIS_URL_VARIABLES = ("MILEPOST_TEST_REDIS_URL", "REDIS_URL")
POSTGRES_IMAGE = "postgres:15-alpine"
REDIS_IMAGE = "redis:7-alpine"
_DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


def _url_from_env(variables: tuple[str, ...]) -> str | None:
    for variable in variables:
        value = os.environ.get(variable, "").strip()
        if value:
            return value
    return None


def _docker_socket(timeout: float) -> socket.socket | None:
    """A connection to the daemon DOCKER_HOST names (unix or plain tcp), or None."""
    target = urlsplit(os.environ.get("DOCKER_HOST", "").strip() or _DEFAULT_DOCKER_HOST)
    try:
        if target.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(target.path)
            except OSError:
                sock.close()
                raise
            return sock
        if target.scheme == "tcp" and target.hostname:
            return socket.create_connection((target.hostname, target.port or 2375), timeout)
    except OSError:
        return None
    # ssh:// and TLS daemons are not probed: the local binaries serve instead.
    return None


def docker_daemon_answers(timeout: float = 1.0) -> bool:
    """Whether a Docker daemon answers `GET /_ping` with 200 within `timeout` seconds."""
    sock = _docker_socket(timeout)
    if sock is None:
        return False
    with sock:
        try:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = sock.recv(64).split(b"\r\n", 1)[0]
        except OSError:
            return False
    return status_line.startswith(b"HTTP/") and status_line.split()[1:2] == [b"200"]


@contextmanager
def provide_postgres() -> Iterator[str]:
    """Yield a `postgresql://` URL of a role that may create databases (a superuser for the
    container and local servers), to that server's `postgres` database or the env URL's."""
    configured = _url_from_env(POSTGRES_URL_VARIABLES)
    if configured is not None:
        yield configured
    elif docker_daemon_answers():
        # Imported here: testcontainers pulls in the Docker SDK, which most runs never need.
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer(POSTGRES_IMAGE, driver=None) as container:
            yield str(container.get_connection_url())
    else:
        with ephemeral_postgres() as url:
            yield url


@contextmanager
def provide_redis() -> Iterator[str]:
    """Yield a `redis://` URL (database 0) of a server the tests may flush."""
    configured = _url_from_env(REDIS_URL_VARIABLES)
    if configured is not None:
        yield configured
    elif docker_daemon_answers():
        from testcontainers.community.redis import RedisContainer

        with RedisContainer(REDIS_IMAGE) as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(6379)}/0"
    else:
        with ephemeral_redis() as url:
            yield url
