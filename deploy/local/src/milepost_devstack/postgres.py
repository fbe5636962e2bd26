"""A Postgres server from Debian's binaries, persistent (`make up`) or ephemeral (tests).

Layout under the server's root directory: `data/` (the cluster) and `run/` (the Unix socket).
Postgres refuses to run as root, so when root the root directory is handed to the `postgres`
user and every server binary runs through `runuser -u postgres`; that user must be able to
reach the directory (a directory under a private home such as /root is not reachable).

Authentication: TCP on 127.0.0.1 only, with SCRAM passwords (the `postgres` superuser gets a
generated one at initdb, application roles get theirs from `ensure_database`); the Unix
socket trusts its peers but is mode 0700, so only the server's OS user (and root) can use it:
that is how this module administers the server, without a password.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from milepost_devstack.errors import ComponentError, StackError
from milepost_devstack.net import LOOPBACK, free_port

POSTGRES_BIN = Path(os.environ.get("MILEPOST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"
_SERVER_OS_USER = "postgres"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _checked_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise StackError(f"refusing the Postgres identifier {name!r}: use [a-z_][a-z0-9_]*")
    return name


class PostgresServer:
    """One cluster under `root`, served on 127.0.0.1:`port`.

    `durable=False` turns off fsync and friends: much faster, and fine for throw-away test
    servers whose data may be lost on a crash.
    """

    def __init__(self, root: Path, port: int, log_path: Path, *, durable: bool = True) -> None:
        self.root = root
        self.port = port
        self.log_path = log_path
        self.durable = durable
        self.data_dir = root / "data"
        self.socket_dir = root / "run"

    @property
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _command(self, program: str, *args: str) -> list[str]:
        argv = [str(POSTGRES_BIN / program), *args]
        return ["runuser", "-u", _SERVER_OS_USER, "--", *argv] if self._as_root else argv

    def _run(self, argv: Sequence[str], *, stdin: str | None = None) -> str:
        result = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, check=False, timeout=120
        )
        if result.returncode != 0:
            raise ComponentError(
                f"postgres: `{' '.join(argv)}` exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result.stdout

    def prepare(self) -> None:
        """Create the root, socket and log files, owned by the server's OS user when root."""
        if not (POSTGRES_BIN / "postgres").exists():
            raise StackError(
                f"no Postgres binaries in {POSTGRES_BIN}: apt-get install postgresql-15, "
                "or point MILEPOST_POSTGRES_BIN at them"
            )
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch(mode=0o640, exist_ok=True)
        if self._as_root:
            for path in (self.root, self.socket_dir, self.log_path):
                shutil.chown(path, _SERVER_OS_USER, _SERVER_OS_USER)
            reachable = subprocess.run(
                ["runuser", "-u", _SERVER_OS_USER, "--", "test", "-w", str(self.root)],
                check=False,
            )
            if reachable.returncode != 0:
                raise StackError(
                    f"the postgres user cannot reach {self.root}: keep MILEPOST_STATE_DIR "
                    "outside private directories such as /root (every parent must be "
                    "traversable by other users)"
                )
        self.root.chmod(0o700)
        self.socket_dir.chmod(0o700)

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def initdb(self, superuser_password: str) -> None:
        """Create the cluster: UTF-8, C.UTF-8 collation, SCRAM on TCP, trust on the socket."""
        pwfile = self.root / ".superuser-password"
        pwfile.write_text(superuser_password + "\n")
        if self._as_root:
            shutil.chown(pwfile, _SERVER_OS_USER, _SERVER_OS_USER)
        pwfile.chmod(0o600)
        try:
            args = [
                "-D", str(self.data_dir), "-U", SUPERUSER, "--pwfile", str(pwfile),
                "--auth-local=trust", "--auth-host=scram-sha-256",
                "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions",
            ]  # fmt: skip
            if not self.durable:
                args.append("--no-sync")
            self._run(self._command("initdb", *args))
        finally:
            pwfile.unlink(missing_ok=True)

    def _server_options(self) -> str:
        options = {
            "listen_addresses": LOOPBACK,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "unix_socket_permissions": "0700",
            "max_connections": "200",
        }
        if not self.durable:
            options |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        return " ".join(f"-c {key}={value}" for key, value in options.items())

    def is_running(self) -> bool:
        """Whether this data directory's postmaster runs: the pid of its lock file is a
        `postgres -D <data dir>` (pg_ctl only asks whether that pid exists, and after a
        reboot or a crash it may be any other process)."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            return False
        return Path(os.fsdecode(argv[0])).name == "postgres" and os.fsencode(self.data_dir) in argv

    def remove_stale_pidfile(self) -> int | None:
        """Remove a lock file no running postmaster holds (Postgres would refuse to start
        while its pid exists); return the pid it named, None when there was none."""
        pid = self.pid()
        if pid is None or self.is_running():
            return None
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        return pid

    def accepts_connections(self) -> bool:
        """Whether the server answers on its TCP port, as the apps reach it (pg_isready)."""
        argv = [str(POSTGRES_BIN / "pg_isready"), "-q", "-h", LOOPBACK, "-p", str(self.port)]
        return subprocess.run([*argv, "-t", "3"], check=False).returncode == 0

    def pid(self) -> int | None:
        """The pid in the postmaster's lock file, or None when there is none."""
        try:
            first_line = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
        except (FileNotFoundError, PermissionError, IndexError):
            return None
        return int(first_line) if first_line.strip().isdigit() else None

    def start(self, timeout: int = 60) -> None:
        """Start the server and return once it accepts connections (pg_ctl start -w)."""
        args = [
            "start", "-w", "-t", str(timeout), "-D", str(self.data_dir),
            "-l", str(self.log_path), "-o", self._server_options(),
        ]  # fmt: skip
        self._run(self._command("pg_ctl", *args))

    def stop(self) -> None:
        """Stop the server (fast mode: roll back open transactions, checkpoint, exit)."""
        if self.is_running():
            self._run(self._command("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir)))

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run `sql` (from stdin, stopping at the first error) as the superuser over the socket."""
        args = [
            "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
            "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-f", "-",
        ]  # fmt: skip
        return self._run(self._command("psql", *args), stdin=sql)

    def ensure_database(self, name: str, owner: str, password: str) -> None:
        """Make role `owner` (LOGIN, CREATEDB, this password) and database `name` it owns.

        Idempotent: an existing role gets the given password, an existing database is kept.
        """
        role, database = _checked_identifier(owner), _checked_identifier(name)
        self.psql(
            f"""
            SELECT 'CREATE ROLE {role}' WHERE NOT EXISTS
                (SELECT FROM pg_roles WHERE rolname = '{role}') \\gexec
            ALTER ROLE {role} WITH LOGIN CREATEDB PASSWORD {_quote_literal(password)};
            SELECT 'CREATE DATABASE {database} OWNER {role}' WHERE NOT EXISTS
                (SELECT FROM pg_database WHERE datname = '{database}') \\gexec
            """  # noqa: S608 - both identifiers are checked against [a-z_][a-z0-9_]*
        )

    def url(self, user: str, password: str, database: str) -> str:
        """A libpq URL (postgresql://) to `database` over TCP."""
        return f"postgresql://{user}:{password}@{LOOPBACK}:{self.port}/{database}"


@contextmanager
def ephemeral_postgres() -> Iterator[str]:
    """A fresh non-durable server on a free port; yields the superuser's URL to `postgres`.

    The server and its directory are removed on exit, also when the body raises.
    """
    root = Path(tempfile.mkdtemp(prefix="milepost-pg-"))
    server = PostgresServer(root, free_port(), root / "postgres.log", durable=False)
    password = secrets.token_urlsafe(24)
    try:
        server.prepare()
        server.initdb(password)
        server.start()
        yield server.url(SUPERUSER, password, "postgres")
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
