"""docker-compose.yml and deploy/docker/Dockerfile, checked without a Docker engine.

The compose file is validated against the Compose Specification schema that check-jsonschema
ships (`vendor.compose-spec`: nothing is downloaded); the Dockerfile is linted by hadolint.
"""

from __future__ import annotations

import json
import re
import subprocess
import sysconfig
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
COMMANDS = {
    "migrate": ["milepost-migrate"],
    "api": ["milepost-api"],
    "admin": ["milepost-admin", "serve"],
    "ingest": ["milepost-ingest"],
    "worker": ["milepost-worker", "--concurrency", "2"],
    "worker-webhooks": [
        *("milepost-worker", "--queues", "webhooks", "--concurrency", "8"),
        *("--hostname", "webhooks@%h"),
    ],
    "beat": ["milepost-beat", "--schedule", "/tmp/celerybeat-schedule"],  # noqa: S108 - in the container
}
# Services that run another service's image (with their own command).
TARGETS = {"worker-webhooks": "worker"}
APP_PORTS = {"api": 8001, "admin": 8002, "ingest": 8003}
ONE_SHOT = {"migrate"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def tool(name: str) -> str:
    """An executable of this virtual environment (check-jsonschema, hadolint)."""
    return str(Path(sysconfig.get_path("scripts")) / name)


def dockerfile_commands() -> dict[str, list[str]]:
    """Each named stage's CMD (exec form) in the Dockerfile."""
    commands: dict[str, list[str]] = {}
    stage = ""
    for line in DOCKERFILE.read_text().splitlines():
        if match := re.match(r"FROM \S+ AS (\S+)", line):
            stage = match.group(1)
        elif line.startswith("CMD "):
            commands[stage] = json.loads(line.removeprefix("CMD "))
    return commands


class TestComposeFile:
    def test_matches_the_compose_specification(self) -> None:
        result = subprocess.run(
            [
                tool("check-jsonschema"),
                "--builtin-schema",
                "vendor.compose-spec",
                str(COMPOSE_FILE),
            ],
            capture_output=True,
            text=True,
            check=False,
        )

        assert result.returncode == 0, result.stdout + result.stderr

    def test_has_the_whole_topology(self, services: dict[str, dict[str, Any]]) -> None:
        # Without a profile: what `docker compose up` starts (monitoring is a profile of its
        # own, checked in test_monitoring.py).
        started = {name for name, service in services.items() if not service.get("profiles")}

        assert started == {"postgres", "redis", "traefik", *COMMANDS}

    def test_every_long_running_service_has_a_healthcheck(
        self, services: dict[str, dict[str, Any]]
    ) -> None:
        missing = [
            name
            for name, service in services.items()
            if name not in ONE_SHOT and not service.get("healthcheck", {}).get("test")
        ]

        assert missing == []

    @pytest.mark.parametrize("name", sorted(COMMANDS))
    def test_service_runs_its_command_from_its_own_target(
        self, services: dict[str, dict[str, Any]], name: str
    ) -> None:
        service = services[name]

        target = TARGETS.get(name, name)
        assert service["command"] == COMMANDS[name]
        assert service["build"]["target"] == target
        # Compose may add options to the image's default command, never change the program.
        image_command = dockerfile_commands()[target]
        assert COMMANDS[name][: len(image_command)] == image_command

    def test_commands_are_console_scripts_of_the_workspace(self) -> None:
        scripts = {entry.name for entry in metadata.entry_points(group="console_scripts")}

        assert {command[0] for command in COMMANDS.values()} <= scripts

    @pytest.mark.parametrize("name", sorted(set(COMMANDS) - ONE_SHOT))
    def test_services_start_after_the_migration(
        self, services: dict[str, dict[str, Any]], name: str
    ) -> None:
        condition = services[name]["depends_on"]["migrate"]["condition"]

        assert condition == "service_completed_successfully"

    def test_migration_waits_for_a_healthy_postgres(
        self, services: dict[str, dict[str, Any]]
    ) -> None:
        assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"

    def test_redis_is_configured_as_a_broker(self, services: dict[str, dict[str, Any]]) -> None:
        command = " ".join(services["redis"]["command"])

        assert "--appendonly yes" in command
        assert "--maxmemory-policy noeviction" in command

    @pytest.mark.parametrize("app", sorted(APP_PORTS))
    def test_gateway_upstream_is_where_the_app_listens(
        self, services: dict[str, dict[str, Any]], app: str
    ) -> None:
        upstream = services["traefik"]["environment"][f"MILEPOST_GATEWAY_{app.upper()}_UPSTREAM"]
        environment = services[app]["environment"]

        assert upstream == f"http://{app}:{APP_PORTS[app]}"
        assert environment[f"MILEPOST_{app.upper()}__PORT"] == str(APP_PORTS[app])
        assert environment[f"MILEPOST_{app.upper()}__HOST"] == "0.0.0.0"  # noqa: S104

    def test_traefik_runs_the_committed_configuration(
        self, services: dict[str, dict[str, Any]]
    ) -> None:
        assert "./deploy/traefik:/etc/traefik:ro" in services["traefik"]["volumes"]


class TestDockerfile:
    def test_passes_hadolint(self) -> None:
        result = subprocess.run(
            [tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, check=False
        )

        assert result.returncode == 0, result.stdout + result.stderr

    def test_runs_as_a_non_root_user(self) -> None:
        users = re.findall(r"^USER (\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE)

        assert users
        assert all(not user.startswith(("root", "0")) for user in users)

    def test_has_a_target_per_process(self) -> None:
        assert set(dockerfile_commands()) == set(COMMANDS) - set(TARGETS)
