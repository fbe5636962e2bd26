"""`make demo`: a demo organization set up through the gateway, and its fleet in the background.

Everything is created the way an operator and a fleet owner would, through the admin and
public APIs behind the gateway, and looked up first (organization and geofence by name,
owner by email, devices by unique_id, rules by name), so a second run reuses what the first
created. What cannot be read back — the owner's password and the API key's secret — is kept
in ``<state>/demo.json`` (mode 600) in `make up`'s state directory; a key whose secret was
lost is rotated, an owner whose password was lost gets a reset through the reset link.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from milepost_devstack.config import StackConfig
from milepost_sim.fleet import depot_polygon, fleet_specs

ORG_NAME = "Milepost Demo"
OWNER_EMAIL = "demo-owner@example.com"
API_KEY_NAME = "Demo simulator"
GEOFENCE_NAME = "Demo depot"
SPEED_LIMIT_KMH = 50.0
RULES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("Demo speeding", "overspeed", {"multiplier": 1.1, "min_duration_s": 20}),
    ("Demo left the depot", "geofence_exit", {}),
    ("Demo back at the depot", "geofence_enter", {}),
    ("Demo low battery", "low_battery", {"threshold_pct": 20}),
    ("Demo offline", "offline", {"after_s": 120}),
)
STATE_FILE = "demo.json"
PID_FILE = "sim.pid"
LOG_FILE = "sim.log"
API_KEY_VARIABLE = "MILEPOST_SIM_API_KEY"


class DemoError(Exception):
    """A step of the demo failed; the message says which and what the platform answered."""


@dataclass(slots=True)
class DemoState:
    """What the demo created (ids), and the two secrets that cannot be read back."""

    org_id: str = ""
    owner_id: str = ""
    owner_password: str = ""
    api_key_id: str = ""
    api_key: str = ""
    geofence_id: str = ""
    device_ids: dict[str, str] = field(default_factory=dict)
    rule_ids: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> DemoState:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        known = {name: raw[name] for name in cls.__dataclass_fields__ if name in raw}
        return cls(**known)

    def save(self, path: Path) -> None:
        """Written atomically, readable by its owner only from the first byte."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, json.dumps(asdict(self), indent=2).encode())
        finally:
            os.close(fd)
        temporary.replace(path)


@dataclass(frozen=True, slots=True)
class DemoSettings:
    gateway_url: str
    state_dir: Path
    operator_email: str = ""
    operator_password: str = ""
    vehicles: int = 10
    prefix: str = "demo-"
    seed: int = 1
    rate: float = 2.0

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "run" / PID_FILE

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / LOG_FILE

    def map_url(self, org_id: str) -> str:
        return f"{self.gateway_url}/admin/organizations/{org_id}/map"


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY='value'`` lines (the format of `make up`'s secrets.env)."""
    values = {}
    for line in path.read_text().splitlines():
        key, sep, raw = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key] = raw.strip().removeprefix("'").removesuffix("'")
    return values


def settings_from_environ(
    environ: Mapping[str, str] | None = None, *, operator: bool = False, **options: Any
) -> DemoSettings:
    """The stack `make up` runs (same variables); with ``operator``, its first operator too,
    each of the two as `make up` chose it: MILEPOST_BOOTSTRAP_EMAIL, else the one in
    secrets.env; MILEPOST_BOOTSTRAP_PASSWORD, else the generated one kept there."""
    environ = os.environ if environ is None else environ
    config = StackConfig.from_environ(environ)
    email = environ.get("MILEPOST_BOOTSTRAP_EMAIL", "").strip()
    password = environ.get("MILEPOST_BOOTSTRAP_PASSWORD", "")
    if operator and not (email and password):
        try:
            stored = read_env_file(config.secrets_file)
        except FileNotFoundError:
            raise DemoError(f"no {config.secrets_file}: run `make up` first") from None
        email = email or stored.get("MILEPOST_BOOTSTRAP_EMAIL", "")
        password = password or stored.get("MILEPOST_BOOTSTRAP_PASSWORD", "")
    return DemoSettings(
        gateway_url=f"http://127.0.0.1:{config.ports.gateway}",
        state_dir=config.state_dir,
        operator_email=email,
        operator_password=password,
        **options,
    )


def _check(response: httpx.Response, what: str, *ok: int) -> Any:
    if response.status_code not in (ok or (200, 201)):
        raise DemoError(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return response.json() if response.content else None


@dataclass(slots=True)
class _Caller:
    """One client of the gateway acting as one principal (its bearer token on each call)."""

    client: httpx.Client
    headers: dict[str, str] = field(default_factory=dict)

    def get(self, url: str, **params: Any) -> httpx.Response:
        return self.client.get(url, params=params, headers=self.headers)

    def post(self, url: str, body: Any = None) -> httpx.Response:
        return self.client.post(url, json=body, headers=self.headers)

    def delete(self, url: str, **params: Any) -> httpx.Response:
        return self.client.delete(url, params=params, headers=self.headers)

    def items(self, url: str, what: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a list route, page after page."""
        cursor = None
        while True:
            query = {**params, "limit": 1000} | ({"cursor": cursor} if cursor else {})
            page = _check(self.get(url, **query), what, 200)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def log_in(self, url: str, email: str, password: str) -> httpx.Response:
        """Log in with the OAuth2 password form; on success later calls carry the token."""
        response = self.client.post(url, data={"username": email, "password": password})
        if response.status_code == 200:
            self.headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        return response


def setup(settings: DemoSettings, client: httpx.Client | None = None) -> DemoState:
    """Create (or find) the demo organization and everything in it. Idempotent; raises
    DemoError naming the step that failed."""
    state = DemoState.load(settings.state_file)
    own = client is None
    client = client or httpx.Client(base_url=settings.gateway_url, timeout=30)
    try:
        operator = _Caller(client)
        login = operator.log_in(
            "/admin/v1/auth/token", settings.operator_email, settings.operator_password
        )
        _check(login, "operator login", 200)
        state.org_id = _organization(operator)["id"]
        _owner(operator, state)
        _devices(operator, settings, state)
        _api_key(operator, state)
        state.save(settings.state_file)
        owner = _Caller(client)
        login = owner.log_in("/api/v1/auth/token", OWNER_EMAIL, state.owner_password)
        _check(login, "owner login", 200)
        _geofence_and_rules(owner, state)
        state.save(settings.state_file)
    finally:
        if own:
            client.close()
    return state


def _organization(operator: _Caller) -> dict[str, Any]:
    url = "/admin/v1/organizations"
    found = [o for o in operator.items(url, "organizations", q=ORG_NAME) if o["name"] == ORG_NAME]
    if not found:
        body = {
            "name": ORG_NAME,
            "default_speed_limit_kmh": SPEED_LIMIT_KMH,
            # A demo pushes more often than the per-key default allows.
            "ingest_rate_limit": "12000/minute",
        }
        return dict(_check(operator.post(url, body), "create the organization", 201))
    org = found[0]
    if org["suspended"]:
        _check(operator.post(f"{url}/{org['id']}/reactivate"), "reactivate the organization")
    return dict(org)


def _owner(operator: _Caller, state: DemoState) -> None:
    users = f"/admin/v1/organizations/{state.org_id}/users"
    found = [u for u in operator.items(users, "users", q=OWNER_EMAIL) if u["email"] == OWNER_EMAIL]
    if not found:
        state.owner_password = secrets.token_urlsafe(18)
        body = {
            "email": OWNER_EMAIL,
            "password": state.owner_password,
            "role": "owner",
            "name": "Demo Owner",
        }
        state.owner_id = _check(operator.post(users, body), "create the owner", 201)["id"]
        return
    owner = found[0]
    state.owner_id = owner["id"]
    if not owner["is_active"]:
        _check(operator.post(f"/admin/v1/users/{owner['id']}/reactivate"), "reactivate owner")
    if state.owner_password:
        login = _Caller(operator.client).log_in(
            "/api/v1/auth/token", OWNER_EMAIL, state.owner_password
        )
        if login.status_code == 200:
            return
    # The password was lost with the state file: set a new one through a reset link.
    reset = operator.post(f"/admin/v1/users/{owner['id']}/reset-password")
    link = urlsplit(_check(reset, "reset the owner's password")["reset_url"])
    token = (parse_qs(link.query) | parse_qs(link.fragment))["token"][0]
    state.owner_password = secrets.token_urlsafe(18)
    redeem = _Caller(operator.client).post(
        "/api/v1/auth/password-reset", {"token": token, "password": state.owner_password}
    )
    _check(redeem, "redeem the owner's reset link", 200, 204)


def _devices(operator: _Caller, settings: DemoSettings, state: DemoState) -> None:
    url = f"/admin/v1/organizations/{state.org_id}/devices"
    existing = {d["unique_id"]: d["id"] for d in operator.items(url, "devices")}
    for spec in fleet_specs(settings.vehicles, settings.prefix):
        if spec.unique_id not in existing:
            body = {
                "unique_id": spec.unique_id,
                "name": spec.name,
                "plate": spec.plate,
                "speed_limit_kmh": SPEED_LIMIT_KMH,
            }
            response = operator.post(url, body)
            if response.status_code == 409:
                raise DemoError(
                    f"unique_id {spec.unique_id} belongs to another organization: "
                    "choose another prefix (--prefix)"
                )
            existing[spec.unique_id] = _check(response, f"register {spec.unique_id}", 201)["id"]
        state.device_ids[spec.unique_id] = existing[spec.unique_id]
    # A smaller fleet than before: the demo's vehicles beyond it would stay registered, silent,
    # and the offline rule (every vehicle) would alert for each. Another vehicle is kept.
    wanted = {spec.unique_id for spec in fleet_specs(settings.vehicles, settings.prefix)}
    ours = re.compile(re.escape(settings.prefix) + "[0-9]{3,}")
    for unique_id, device_id in existing.items():
        if unique_id not in wanted and ours.fullmatch(unique_id):
            removed = operator.delete(f"/admin/v1/devices/{device_id}", confirm=unique_id)
            _check(removed, f"remove {unique_id}", 204)
            state.device_ids.pop(unique_id, None)


def _api_key(operator: _Caller, state: DemoState) -> None:
    url = f"/admin/v1/organizations/{state.org_id}/api-keys"
    active = [
        k for k in operator.items(url, "API keys", status="active") if k["name"] == API_KEY_NAME
    ]
    if state.api_key and any(k["id"] == state.api_key_id for k in active):
        return
    if active:  # the secret was lost: a new one, the old one revoked
        issued = _check(
            operator.post(f"/admin/v1/api-keys/{active[0]['id']}/rotate"),
            "rotate the API key",
            201,
        )
    else:
        body = {"name": API_KEY_NAME, "scopes": ["ingest", "ingest:osmand"]}
        issued = _check(operator.post(url, body), "issue the API key", 201)
    state.api_key_id, state.api_key = issued["id"], issued["key"]


def _geofence_and_rules(owner: _Caller, state: DemoState) -> None:
    geofences = [
        g for g in owner.items("/api/v1/geofences", "geofences") if g["name"] == GEOFENCE_NAME
    ]
    if geofences:
        state.geofence_id = geofences[0]["id"]
    else:
        geofence = {"name": GEOFENCE_NAME, "geometry": depot_polygon()}
        created = owner.post("/api/v1/geofences", geofence)
        state.geofence_id = _check(created, "create the geofence", 201)["id"]
    rules = {r["name"]: r["id"] for r in owner.items("/api/v1/alert-rules", "alert rules")}
    for name, kind, params in RULES:
        if name not in rules:
            full = {**params, "geofence_id": state.geofence_id} if "geofence" in kind else params
            rule = {"name": name, "type": kind, "params": full, "vehicle_ids": None}
            created = owner.post("/api/v1/alert-rules", rule)
            rules[name] = _check(created, f"create the rule {name!r}", 201)["id"]
        state.rule_ids[name] = rules[name]


# -- the simulator in the background -----------------------------------------------------


def _running(settings: DemoSettings) -> tuple[int, list[str]] | None:
    """The pid and arguments (after the interpreter) of the demo's simulator when the pid
    file names a live one."""
    try:
        pid = int(settings.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ValueError):
        return None
    if b"milepost_sim" not in cmdline:
        return None
    return pid, cmdline.decode(errors="replace").split("\0")[1:-1]


def running_pid(settings: DemoSettings) -> int | None:
    """The pid of the demo's simulator when the pid file names a live one."""
    running = _running(settings)
    return running[0] if running else None


def fleet_arguments(settings: DemoSettings) -> list[str]:
    """The simulator's command line after the interpreter: the fleet these settings ask for."""
    return [
        "-m",
        "milepost_sim",
        "run",
        f"--gateway={settings.gateway_url}",
        f"--vehicles={settings.vehicles}",
        f"--prefix={settings.prefix}",
        f"--seed={settings.seed}",
        f"--rate={settings.rate}",
        "--duration=0",
    ]


def start(settings: DemoSettings, state: DemoState) -> tuple[int, str]:
    """Start the simulator detached with the settings' fleet; (pid, "started"). One already
    running with the same arguments is left alone ("already running"); one running with
    others is stopped and started again with these ("restarted with the new arguments")."""
    argv = [sys.executable, *fleet_arguments(settings)]
    what = "started"
    running = _running(settings)
    if running is not None:
        if running[1] == argv[1:]:
            return running[0], "already running"
        stop(settings)
        what = "restarted with the new arguments"
    settings.pid_file.parent.mkdir(parents=True, exist_ok=True)
    settings.log_file.parent.mkdir(parents=True, exist_ok=True)
    # The key travels in the environment, never on a command line others can read.
    env = {**os.environ, API_KEY_VARIABLE: state.api_key, "PYTHONUNBUFFERED": "1"}
    log = os.open(settings.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        # A session of its own, detached from the terminal: it outlives `make demo`.
        pid = os.posix_spawn(
            sys.executable,
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log, 1),
                (os.POSIX_SPAWN_DUP2, log, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(log)
    settings.pid_file.write_text(f"{pid}\n")
    time.sleep(1.0)
    if os.waitpid(pid, os.WNOHANG) != (0, 0):
        settings.pid_file.unlink(missing_ok=True)
        tail = settings.log_file.read_text(errors="replace").splitlines()[-5:]
        raise DemoError("the simulator stopped at once:\n  " + "\n  ".join(tail))
    return pid, what


def stop(settings: DemoSettings, timeout_s: float = 10.0) -> int | None:
    """Stop the demo's simulator (SIGTERM, then SIGKILL); the pid it had, or None."""
    pid = running_pid(settings)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)
    settings.pid_file.unlink(missing_ok=True)
    return pid


def _reap(pid: int) -> None:
    """Collect the exit status when the simulator is our own child (tests start it)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def describe(settings: DemoSettings, state: DemoState, pid: int, what: str) -> str:
    """What `make demo` prints; ``what`` is how `start` found the fleet."""
    return "\n".join(
        [
            f"Demo fleet {what}: {settings.vehicles} vehicles of {ORG_NAME!r} pushing "
            f"{settings.rate:g} fixes/s through {settings.gateway_url} (pid {pid}, log "
            f"{settings.log_file})",
            f"  map       {settings.map_url(state.org_id)}",
            f"  operator  {settings.operator_email} (the login `make up` printed; kept in "
            f"{settings.state_dir / 'secrets.env'})",
            f"  owner     {OWNER_EMAIL} / {state.owner_password} (public API: POST "
            f"{settings.gateway_url}/api/v1/auth/token; kept in {settings.state_file})",
            "  stop      make demo-stop",
        ]
    )
