"""Token keys reach only the process of their realm: the api's keys the api, admin's token
and cookie keys admin (its server and command line); ingest, the workers and beat none. The
webhook secrets key and the API key pepper reach only the processes that use them.
Checked in `make up` (each process's environment, and the settings every service renders
from it in production) and in docker-compose.yml."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from app_support import SETTINGS, load_settings

from milepost_devstack.config import Ports, StackConfig
from milepost_devstack.stack import PROCESSES, Stack

COMPOSE_FILE = Path(__file__).resolve().parents[3] / "docker-compose.yml"
API_KEYS = {"MILEPOST_AUTH__JWT_KEYS", "MILEPOST_AUTH__JWT_ACTIVE_KID"}
ADMIN_KEYS = {
    "MILEPOST_AUTH__ADMIN_JWT_KEYS",
    "MILEPOST_AUTH__ADMIN_JWT_ACTIVE_KID",
    "MILEPOST_ADMIN__COOKIE_KEY",
}
OWN_KEYS = {"api": API_KEYS, "admin": ADMIN_KEYS}
SECRET_FILES = {
    "./milepost-api.env": API_KEYS,
    "./milepost-admin.env": ADMIN_KEYS,
    "./milepost-webhook-secrets.env": {"MILEPOST_AUTH__SECRETS_KEY"},
    "./milepost-api-keys.env": {"MILEPOST_AUTH__API_KEY_PEPPER"},
}
MILEPOST_PROCESSES = [name for name in PROCESSES if name not in ("redis", "traefik")]


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    # A key exported in the caller's shell must not ride along to every process either.
    inherited = {"PATH": "/usr/bin", "MILEPOST_AUTH__JWT_KEYS": '{"exported": "' + "e" * 40 + '"}'}
    config = StackConfig(tmp_path / "state", Ports(), environment="production")
    return Stack(config, environ=inherited)


class TestMakeUp:
    @pytest.mark.parametrize("process", [*PROCESSES, None])
    def test_each_process_gets_the_token_keys_of_its_own_realm_only(
        self, stack: Stack, process: str | None
    ) -> None:
        credentials = stack.credentials()

        env = stack.process_env(credentials, process)

        given = {key: value for key, value in env.items() if key in API_KEYS | ADMIN_KEYS}
        expected = OWN_KEYS.get(process or "", set())
        assert set(given) == expected
        assert given.items() <= credentials.app_env(process).items()

    @pytest.mark.parametrize("process", MILEPOST_PROCESSES)
    def test_each_service_renders_production_settings_with_its_own_realm_only(
        self, stack: Stack, monkeypatch: pytest.MonkeyPatch, process: str
    ) -> None:
        for name in os.environ:
            if name.startswith("MILEPOST_") or name in ("DATABASE_URL", "REDIS_URL"):
                monkeypatch.delenv(name)
        for name, value in stack.process_env(stack.credentials(), process).items():
            monkeypatch.setenv(name, value)

        auth = SETTINGS[process]().auth

        held = {field for field in ("jwt_keys", "admin_jwt_keys") if getattr(auth, field)}
        assert held == {"api": {"jwt_keys"}, "admin": {"admin_jwt_keys"}}.get(process, set())

    @pytest.mark.parametrize("process", [*PROCESSES, None])
    def test_the_secrets_key_and_the_pepper_reach_only_the_processes_that_use_them(
        self, stack: Stack, process: str | None
    ) -> None:
        # As the Kubernetes manifests hand them out (test_kubernetes_pods.expected_secrets):
        # the secrets key where the settings declare it or webhooks are delivered, the
        # pepper in the apps; other commands of the stack (None) may need either.
        inherited = {
            "PATH": "/usr/bin",
            "MILEPOST_AUTH__SECRETS_KEY": "exported",
            "MILEPOST_AUTH__API_KEY_PEPPER": "exported",
        }
        shell = Stack(stack.config, environ=inherited)
        env = shell.process_env(shell.credentials(), process)

        secrets_key = (
            process is None
            or process == "worker-webhooks"
            or (process in SETTINGS and SETTINGS[process].uses_secrets_key)
        )
        pepper = process in (None, "api", "admin", "ingest")
        assert ("MILEPOST_AUTH__SECRETS_KEY" in env) == secrets_key
        assert ("MILEPOST_AUTH__API_KEY_PEPPER" in env) == pepper
        assert "exported" not in (
            env.get("MILEPOST_AUTH__SECRETS_KEY"),
            env.get("MILEPOST_AUTH__API_KEY_PEPPER"),
        )

    def test_the_two_realms_get_different_keys(self, stack: Stack) -> None:
        credentials = stack.credentials()

        assert credentials.jwt_keys != credentials.admin_jwt_keys
        assert credentials.admin_cookie_key not in credentials.admin_jwt_keys


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    loaded: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return loaded


class TestCompose:
    def test_each_secret_comes_only_from_the_files_of_the_services_that_use_it(
        self, services: dict[str, dict[str, Any]]
    ) -> None:
        env_files = {
            name: [entry["path"] for entry in service.get("env_file", [])]
            for name, service in services.items()
        }

        shared = "./milepost.env"
        assert env_files["api"] == [
            shared,
            "./milepost-api.env",
            "./milepost-webhook-secrets.env",
            "./milepost-api-keys.env",
        ]
        assert env_files["admin"] == [shared, "./milepost-admin.env", "./milepost-api-keys.env"]
        assert env_files["ingest"] == [shared, "./milepost-api-keys.env"]
        assert env_files["worker-webhooks"] == [shared, "./milepost-webhook-secrets.env"]
        # As Kubernetes hands out its Secrets of the same names (base/kustomization.yaml).
        users = {
            path: {name for name, paths in env_files.items() if path in paths}
            for path in {p for paths in env_files.values() for p in paths} - {shared}
        }
        assert users == {
            "./milepost-api.env": {"api"},
            "./milepost-admin.env": {"admin"},
            "./milepost-webhook-secrets.env": {"api", "worker-webhooks"},
            "./milepost-api-keys.env": {"api", "admin", "ingest"},
        }

    def test_no_service_is_given_a_token_key_inline(
        self, services: dict[str, dict[str, Any]]
    ) -> None:
        secrets = (
            API_KEYS | ADMIN_KEYS | {"MILEPOST_AUTH__SECRETS_KEY", "MILEPOST_AUTH__API_KEY_PEPPER"}
        )
        inline = {
            name: set(service.get("environment", {})) & secrets
            for name, service in services.items()
        }

        assert not any(inline.values()), inline

    def test_the_processing_workers_beat_and_migrate_get_no_secret_file(
        self, services: dict[str, dict[str, Any]]
    ) -> None:
        for name in ("worker", "beat", "migrate"):
            assert [entry["path"] for entry in services[name]["env_file"]] == ["./milepost.env"]

    @pytest.mark.parametrize("service", [*SETTINGS, "migrate"])
    def test_the_shared_file_configures_every_milepost_container(
        self,
        services: dict[str, dict[str, Any]],
        stack: Stack,
        monkeypatch: pytest.MonkeyPatch,
        service: str,
    ) -> None:
        # What the header asks of an operator going to production: the shared file names the
        # environment and may point at their own database and Redis.
        shared = {
            "MILEPOST_ENV": "production",
            "MILEPOST_DB__URL": "postgresql+asyncpg://fleet:pw@db.internal:5432/fleet",
            "MILEPOST_REDIS__URL": "redis://cache.internal:6379/0",
        }
        secrets: dict[str, str] = {}
        for process in ("api", "admin", "worker-webhooks"):
            secrets |= stack.credentials().app_env(process)
        files = {"./milepost.env": shared} | {
            path: {key: secrets[key] for key in keys} for path, keys in SECRET_FILES.items()
        }

        env = compose_environment(services[service], files)
        settings = load_settings(SETTINGS.get(service, SETTINGS["worker"]), env, monkeypatch)

        assert settings.env == "production"
        assert settings.db.url == shared["MILEPOST_DB__URL"]
        assert settings.redis.url == shared["MILEPOST_REDIS__URL"]

    def test_without_the_shared_file_the_containers_reach_the_compose_services(
        self, services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        env = compose_environment(services["worker"], {})
        settings = load_settings(SETTINGS["worker"], env, monkeypatch)

        assert settings.env == "local"
        compose_postgres = "postgresql+asyncpg://milepost:milepost@postgres:5432/milepost"
        assert settings.db.url == compose_postgres
        assert settings.redis.url == "redis://redis:6379/0"


def compose_environment(
    service: dict[str, Any], files: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """The environment Compose gives the service's container, with ``files`` as the env files
    on disk (an optional one missing is skipped) and nothing set in the shell: each env file
    in order, a later one winning, then ``environment``, which wins over every file, with its
    ``${NAME:-default}`` taking the default."""
    env: dict[str, str] = {}
    for entry in service.get("env_file", []):
        env |= files.get(entry["path"], {})
    for name, value in service.get("environment", {}).items():
        env[name] = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))
    return env
