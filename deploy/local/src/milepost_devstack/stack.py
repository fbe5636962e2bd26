"""The whole Milepost stack on one machine, from local binaries: what `make up` runs.

`Stack.up()` starts whatever is not running yet — Redis, Postgres, the migrations, the first
operator, the three apps, the worker, the webhooks worker, beat and Traefik — and returns once
all of it is healthy: each app's /ready on its own port and through the gateway, and a ping
task consumed by each worker group. Running pieces are left alone, so `up` is idempotent;
the ports of all the others are checked before anything starts, and a failed `up` stops what
it started (a half-started stack would keep that attempt's ports and URLs).
`Stack.down()` stops exactly the processes the stack started (pidfiles in `<state>/run`,
checked against the kernel's record of each pid) and the Postgres cluster of
`<state>/postgres`; data survives.

Every process gets the caller's environment plus the stack's ports, URLs and the
secrets of `<state>/secrets.env` it uses (`credentials.py` says which process uses which). Logs go
to `<state>/logs/<component>.log`, moved to `<component>.log.1` when over 50 MB at its start.
"""

from __future__ import annotations

import os
import secrets
import sysconfig
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from milepost_devstack import state, traefik
from milepost_devstack.checks import Check, Command, eventually_succeeds, succeeded, wait_all
from milepost_devstack.config import PORT_VARIABLES, StackConfig
from milepost_devstack.credentials import Credentials, load_or_create
from milepost_devstack.errors import StackError
from milepost_devstack.net import LOOPBACK, http_status, port_in_use
from milepost_devstack.postgres import PostgresServer
from milepost_devstack.process import ProcessManager, ProcessSpec, rotate_log, tail
from milepost_devstack.redis import RedisServer

APPS = ("api", "admin", "ingest")
# Start order of the processes the ProcessManager owns; stopped in reverse.
PROCESSES = ("redis", "api", "admin", "ingest", "worker", "worker-webhooks", "beat", "traefik")
COMPONENTS = (
    "redis",
    "postgres",
    "api",
    "admin",
    "ingest",
    "worker",
    "worker-webhooks",
    "beat",
    "traefik",
)
# Each worker group's queues; "worker" consumes the default ones (all but webhooks).
WORKER_QUEUES = {"worker": None, "worker-webhooks": "webhooks"}
ROLE = DATABASE = "milepost"
# The Ports fields each component listens on.
_PORT_FIELDS = {
    "redis": ("redis",),
    "postgres": ("postgres",),
    "api": ("api",),
    "admin": ("admin",),
    "ingest": ("ingest",),
    "worker": ("worker_metrics",),
    "worker-webhooks": ("worker_webhooks_metrics",),
    "beat": (),
    "traefik": ("gateway", "gateway_metrics"),
}
# Beat serves nothing to probe: it counts as started once it survived its imports this long.
BEAT_SETTLE_S = 8.0
# Secrets: each process gets only those it uses, from the stack's own (credentials.py).
_STACK_SECRETS = (
    "MILEPOST_AUTH__JWT_KEYS",
    "MILEPOST_AUTH__JWT_ACTIVE_KID",
    "MILEPOST_AUTH__ADMIN_JWT_KEYS",
    "MILEPOST_AUTH__ADMIN_JWT_ACTIVE_KID",
    "MILEPOST_ADMIN__COOKIE_KEY",
    "MILEPOST_AUTH__SECRETS_KEY",
    "MILEPOST_AUTH__API_KEY_PEPPER",
)
# Inherited variables that would override what the stack passes to its processes.
_SHADOWING_VARIABLES = ("DATABASE_URL", "REDIS_URL", "MILEPOST_BOOTSTRAP_PASSWORD")


def _script(name: str) -> str:
    """A console script of this virtual environment (where uv installed the workspace)."""
    path = Path(sysconfig.get_path("scripts")) / name
    if not path.exists():
        raise StackError(f"{path} not found: run `uv sync --all-packages` first")
    return str(path)


@dataclass(frozen=True)
class Operator:
    """The first operator's login, when `up` just created it with a generated password."""

    email: str
    password: str


@dataclass(frozen=True)
class ComponentStatus:
    """One component as `status` sees it: pid None when stopped."""

    name: str
    pid: int | None
    healthy: bool
    detail: str


class Stack:
    """One local stack, configured by `config`; commands that change it take turns (state.py)."""

    def __init__(
        self,
        config: StackConfig,
        *,
        report: Callable[[str], None] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self._report = report or (lambda _message: None)
        self._environ = dict(os.environ if environ is None else environ)
        self.processes = ProcessManager(config.run_dir, config.log_dir)
        ports = config.ports
        self.redis = RedisServer(config.state_dir / "redis", ports.redis, durable=config.durable)
        self.postgres = PostgresServer(
            config.state_dir / "postgres",
            ports.postgres,
            config.log_dir / "postgres.log",
            durable=config.durable,
        )

    @property
    def gateway_url(self) -> str:
        return f"http://{LOOPBACK}:{self.config.ports.gateway}"

    @property
    def console_url(self) -> str:
        """The admin console, through the gateway."""
        return f"{self.gateway_url}/admin/"

    def app_url(self, app: str) -> str:
        """The app's own base URL (serves /<app>/... and /metrics)."""
        return f"http://{LOOPBACK}:{getattr(self.config.ports, app)}"

    def database_url(self, credentials: Credentials) -> str:
        return self.postgres.url(ROLE, credentials.db_password, DATABASE)

    def credentials(self) -> Credentials:
        """The stack's secrets, created on first use in a mode-600 file."""
        state.prepare(self.config)
        return load_or_create(self.config.secrets_file)

    def process_env(self, credentials: Credentials, process: str | None = None) -> dict[str, str]:
        """The environment of `process` (None: any other command of the stack), with the
        secrets it uses only: token keys reach only the app of their realm, the webhook
        secrets key the api and the webhooks workers, the API key pepper the apps."""
        ports = self.config.ports
        env = {k: v for k, v in self._environ.items() if k not in _SHADOWING_VARIABLES}
        env |= {
            "MILEPOST_ENV": self.config.environment,
            "MILEPOST_DB__URL": self.database_url(credentials).replace(
                "postgresql://", "postgresql+asyncpg://", 1
            ),
            "MILEPOST_REDIS__URL": self.redis.url,
            "MILEPOST_GATEWAY_PORT": str(ports.gateway),
            "MILEPOST_WORKER__METRICS_PORT": str(ports.worker_metrics),
            "PYTHONUNBUFFERED": "1",
        }
        for app in APPS:
            env[f"MILEPOST_{app.upper()}__HOST"] = LOOPBACK
            env[f"MILEPOST_{app.upper()}__PORT"] = str(getattr(ports, app))
            # Traefik on loopback is the only proxy: its X-Forwarded-For alone names clients.
            env[f"MILEPOST_{app.upper()}__FORWARDED_ALLOW_IPS"] = LOOPBACK
        # Invitation and reset links start with the gateway's URL, whatever its port.
        for app in ("api", "admin"):
            env.setdefault(f"MILEPOST_{app.upper()}__PUBLIC_URL", self.gateway_url)
        # Inherited secrets would reach every process: only the stack's own are passed.
        env = {k: v for k, v in env.items() if k not in _STACK_SECRETS}
        return env | credentials.app_env(process)

    def _spec(self, name: str, env: dict[str, str]) -> ProcessSpec:
        state_dir = self.config.state_dir
        if name == "redis":
            return self.redis.process_spec(env)
        if name == "traefik":
            ports = self.config.ports
            static = traefik.render_static_config(
                state_dir / "traefik" / "traefik.yml", ports.gateway, ports.gateway_metrics
            )
            upstreams = traefik.Upstreams.on_loopback(ports.api, ports.admin, ports.ingest)
            return traefik.process_spec(static, upstreams, env, state_dir)
        commands = {
            "api": [_script("milepost-api")],
            "admin": [_script("milepost-admin"), "serve"],
            "ingest": [_script("milepost-ingest")],
            "worker": [_script("milepost-worker"), "--concurrency", "2"],
            # Deliveries wait on receivers, not on the CPU: more children than cores.
            "worker-webhooks": [
                _script("milepost-worker"),
                *("--queues", "webhooks", "--concurrency", "4", "--hostname", "webhooks@%h"),
            ],
            "beat": [_script("milepost-beat"), "--schedule", str(state_dir / "beat" / "schedule")],
        }
        if name in WORKER_QUEUES:
            # The prefork children's metric files: inside the state directory, one directory
            # per worker (each clears its own at start), and only for workers (they switch
            # prometheus-client to multiprocess mode).
            port = getattr(self.config.ports, _PORT_FIELDS[name][0])
            env = env | {
                "PROMETHEUS_MULTIPROC_DIR": str(self.config.run_dir / f"{name}-metrics"),
                "MILEPOST_WORKER__METRICS_PORT": str(port),
            }
        return ProcessSpec(name, commands[name], env, state_dir)

    def up(self, timeout: float = 180.0) -> Operator | None:
        """Start what is not running and wait until everything is healthy.

        Returns the first operator's login when this call created it with a generated
        password (so the caller can show it once), else None. Raises StackError naming the
        variable to change when a port is taken (before starting anything), or with the
        failing component's log tail when something does not come up within `timeout`; on
        failure, what this call started is stopped again.
        """
        deadline = time.monotonic() + timeout
        with state.locked(self.config, self._report):
            credentials = self.credentials()
            self._check_ports_before_up()
            started: list[str] = []
            try:
                return self._up(credentials, started, deadline)
            except BaseException:
                # Else the next `up`, with other ports, would complete a stack whose
                # processes keep this attempt's URLs (the apps' gateway links above all).
                self._stop_started(started)
                raise

    def _up(self, credentials: Credentials, started: list[str], deadline: float) -> Operator | None:
        env = self.process_env(credentials)
        self._start_process("redis", env, started)
        self._start_postgres(credentials, started)
        self._wait([self._health_check("redis", env, [])], deadline)
        self._report("running migrations")
        migrate = self._command("migrate", [_script("milepost-migrate")], env)
        background = [migrate.start()]
        try:
            self._wait([succeeded(migrate)], deadline)
            admin_env = self.process_env(credentials, "admin")
            bootstrap, operator = self._bootstrap_command(credentials, admin_env)
            background.append(bootstrap.start())
            for name in PROCESSES[1:]:
                self._start_process(name, self.process_env(credentials, name), started)
            self._report("waiting for the stack to be healthy")
            own_ports = [self._health_check(name, env, background) for name in PROCESSES[1:]]
            self._wait([succeeded(bootstrap), *own_ports], deadline)
            self._wait(self._gateway_checks(), deadline)
        finally:
            for command in background:
                command.stop()
        created = bootstrap.output.strip().splitlines()[-1:] == ["created"]
        return operator if created else None

    def _check_ports_free(self, name: str, advice: str = "") -> None:
        """Raise StackError naming the variable to change when a port of `name` is taken."""
        for field in _PORT_FIELDS[name]:
            port = getattr(self.config.ports, field)
            if port_in_use(port):
                raise StackError(
                    f"cannot start {name}: port {port} is taken by another process "
                    f"(choose another with {PORT_VARIABLES[field]}{advice})"
                )

    def _check_ports_before_up(self) -> None:
        """Every component `up` would start has its ports free, before anything starts."""
        running = [name for name in PROCESSES if self.processes.running(name) is not None]
        stopped = [name for name in COMPONENTS if name not in running]
        if self.postgres.is_running():
            running.append("postgres")
            stopped.remove("postgres")
        # Running components keep their ports and the others' URLs: only a fresh start
        # gives every process the new port.
        advice = " after `make down`: running components keep the old ports" if running else ""
        for name in stopped:
            self._check_ports_free(name, advice)

    def _stop_started(self, started: list[str]) -> None:
        """Stop the components a failed `up` started (Postgres after its clients)."""
        if not started:
            return
        self._report(f"up failed: stopping what it started ({', '.join(started)})")
        try:
            self._stop(started)
        except StackError as error:
            self._report(f"could not stop everything (`make down` will retry): {error}")

    def _start_process(self, name: str, env: dict[str, str], started: list[str]) -> None:
        if self.processes.running(name) is not None:
            return
        self._check_ports_free(name)
        self._report(f"starting {name}")
        self.processes.start(self._spec(name, env))
        started.append(name)

    def _start_postgres(self, credentials: Credentials, started: list[str]) -> None:
        server = self.postgres
        if not server.is_running():
            rotate_log(server.log_path)  # before prepare() creates it for the server's user
        server.prepare()
        if not server.initialized:
            self._report("initialising the Postgres cluster")
            # The stack administers over the socket only: nobody needs the superuser's TCP
            # password, so it is random and not kept.
            server.initdb(secrets.token_urlsafe(24))
        if not server.is_running():
            stale = server.remove_stale_pidfile()
            if stale is not None:
                self._report(f"removed postgres's stale postmaster.pid (pid {stale} is not it)")
            self._check_ports_free("postgres")
            self._report("starting postgres")
            server.start()
            started.append("postgres")
        server.ensure_database(DATABASE, ROLE, credentials.db_password)

    def _command(self, name: str, argv: list[str], env: dict[str, str], stdin: str = "") -> Command:
        """A one-shot command whose output goes to `<logs>/<name>.log`."""
        log = self.processes.log_path(name)
        return Command(argv, env, self.config.state_dir, log, stdin=stdin)

    def _bootstrap_command(
        self, credentials: Credentials, env: dict[str, str]
    ) -> tuple[Command, Operator | None]:
        """`milepost-admin create-operator` for the first operator (idempotent), and that
        operator's login when its password is generated rather than given."""
        email = self.operator_email(credentials)
        given_password = self._environ.get("MILEPOST_BOOTSTRAP_PASSWORD", "")
        password = given_password or credentials.operator_password
        argv = [_script("milepost-admin"), "create-operator", "--email", email]
        command = self._command("create-operator", argv, env, stdin=password + "\n")
        return command, None if given_password else Operator(email, password)

    def operator_email(self, credentials: Credentials) -> str:
        """The first operator's email: MILEPOST_BOOTSTRAP_EMAIL, else the stack's default."""
        email = self._environ.get("MILEPOST_BOOTSTRAP_EMAIL", "").strip()
        return email or credentials.operator_email

    def _wait(self, checks: list[Check], deadline: float) -> None:
        wait_all(checks, deadline, self._failure, self._report)

    def _failure(self, name: str, what: str) -> str:
        log = self.processes.log_path(name)
        return f"{name} {what}; last lines of {log}:\n{tail(log, 40)}"

    def _alive(self, name: str) -> Callable[[], bool]:
        return lambda: self.processes.running(name) is not None

    def _health_check(self, name: str, env: dict[str, str], background: list[Command]) -> Check:
        """`name` answers on its own port. Each worker group must consume a ping task sent to
        its queue (a command run in the background, added to `background` so the caller can
        stop it); beat, which answers nothing, must stay up for BEAT_SETTLE_S."""
        if name == "redis":
            return Check(name, self.redis.ping, self._alive(name))
        if name == "traefik":
            return Check(name, self._traefik_ready, self._alive(name))
        if name in APPS:
            return Check(name, partial(self._app_ready, name), self._alive(name))
        if name in WORKER_QUEUES:
            argv = [_script("milepost-worker-ping"), "--timeout", "10"]
            queue = WORKER_QUEUES[name]
            argv += ["--queue", queue] if queue else []
            ping = self._command(f"{name}-ping", argv, env)
            background.append(ping)
            return Check(name, eventually_succeeds(ping), self._alive(name))
        settled = partial(self.processes.has_run_for, name, BEAT_SETTLE_S)
        return Check(name, settled, self._alive(name))

    def _gateway_checks(self) -> list[Check]:
        """Each app's /ready answers 200 through Traefik."""
        return [
            Check(
                "traefik",
                partial(self._app_ready, app, self.gateway_url),
                self._alive("traefik"),
                label=f"gateway /{app}",
            )
            for app in APPS
        ]

    def _traefik_ready(self) -> bool:
        return traefik.ping(self.config.ports.gateway_metrics)

    def _app_ready(self, app: str, base_url: str | None = None) -> bool:
        return http_status(f"{base_url or self.app_url(app)}/{app}/ready") == 200

    def down(self) -> list[str]:
        """Stop every component of this stack; return the names that were running."""
        with state.locked(self.config, self._report):
            self._report("stopping the stack")
            return self._stop(COMPONENTS)

    def _stop(self, names: Sequence[str]) -> list[str]:
        """Stop those of `names` that run, Postgres and Redis after the processes using
        them; return the names that were running. A step that fails does not keep the
        next from running: the failures are raised at the end."""
        clients = [name for name in reversed(PROCESSES[1:]) if name in names]
        steps: list[Callable[[], list[str]]] = [partial(self.processes.stop, clients)]
        if "postgres" in names:
            steps.append(self._stop_postgres)
        if "redis" in names:
            steps.append(partial(self.processes.stop, ["redis"]))
        stopped: list[str] = []
        failures = []
        for step in steps:
            try:
                stopped += step()
            except StackError as error:
                failures.append(str(error))
        if failures:
            failures.append(f"stopped: {', '.join(stopped) or 'nothing'}")
            raise StackError("\n".join(failures))
        return stopped

    def _stop_postgres(self) -> list[str]:
        if not self.postgres.is_running():
            return []
        self.postgres.stop()
        return ["postgres"]

    def stop_component(self, name: str) -> None:
        """Stop one component (e.g. Redis, to watch the apps degrade); data is kept."""
        with state.locked(self.config, self._report):
            if name == "postgres":
                self.postgres.stop()
            else:
                self.processes.stop([self._known(name)])

    def start_component(self, name: str, timeout: float = 60.0) -> None:
        """Start one stopped component again and wait until it answers on its own port."""
        with state.locked(self.config, self._report):
            credentials = self.credentials()
            if name == "postgres":
                self._start_postgres(credentials, [])
                return
            env = self.process_env(credentials, name)
            self._start_process(self._known(name), env, [])
            background: list[Command] = []
            try:
                deadline = time.monotonic() + timeout
                self._wait([self._health_check(name, env, background)], deadline)
            finally:
                for command in background:
                    command.stop()

    @staticmethod
    def _known(name: str) -> str:
        if name not in PROCESSES:
            raise StackError(f"unknown component {name!r}; one of {', '.join(COMPONENTS)}")
        return name

    def status(self) -> list[ComponentStatus]:
        """Each component's pid (None when stopped) and health, without changing anything."""
        try:
            statuses = [self._postgres_status()]
            records = {name: self.processes.running(name) for name in PROCESSES}
        except OSError as error:  # the pidfiles' directory
            raise state.unusable(self.config, error) from error
        for name, record in records.items():
            healthy, detail = self._probe(name) if record else (False, "stopped")
            statuses.append(ComponentStatus(name, record.pid if record else None, healthy, detail))
        order = {name: index for index, name in enumerate(COMPONENTS)}
        return sorted(statuses, key=lambda status: order[status.name])

    def _postgres_status(self) -> ComponentStatus:
        if not self.postgres.is_running():
            return ComponentStatus("postgres", None, False, "stopped")
        healthy = self.postgres.accepts_connections()
        address = f"{LOOPBACK}:{self.postgres.port}"
        return ComponentStatus("postgres", self.postgres.pid(), healthy, address)

    def _probe(self, name: str) -> tuple[bool, str]:
        ports = self.config.ports
        if name == "redis":
            return self.redis.ping(), self.redis.url
        if name == "traefik":
            return self._traefik_ready(), f"{self.gateway_url} (metrics :{ports.gateway_metrics})"
        if name in APPS:
            status = http_status(f"{self.app_url(name)}/{name}/ready")
            return status == 200, f"{self.app_url(name)}/{name}/ready -> {status or 'no answer'}"
        if name in WORKER_QUEUES:
            port = getattr(ports, _PORT_FIELDS[name][0])
            metrics = http_status(f"http://{LOOPBACK}:{port}/metrics")
            return metrics == 200, f"metrics :{port} -> {metrics or 'no answer'}"
        return True, "running"
