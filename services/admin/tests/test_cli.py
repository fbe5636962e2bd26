"""``milepost-admin``: what an operator scripts, against a committed database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable

import orjson
import pytest
from pydantic import ValidationError
from sqlmodel import select

from milepost_admin import cli
from milepost_admin.settings import AdminSettings
from milepost_common.db import create_database, unit_of_work
from milepost_common.domain.api_keys.models import Scope
from milepost_common.domain.audit.models import AuditEntry
from milepost_common.domain.users.models import OrgRole, PlatformRole


@pytest.fixture
def cli_settings(
    settings_factory: Callable[..., AdminSettings], committed_database: str
) -> AdminSettings:
    return settings_factory(AdminSettings, db={"url": committed_database})


def printed(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    line = capsys.readouterr().out.strip().splitlines()[-1]
    value = orjson.loads(line)
    assert isinstance(value, dict)
    return value


class TestCommands:
    async def test_create_operator_twice_creates_one(self, cli_settings: AdminSettings) -> None:
        email = f"boot-{uuid.uuid4().hex[:8]}@example.com"
        password = "a long passphrase"
        assert await cli.create_operator(cli_settings, email, password, PlatformRole.SUPERADMIN)
        assert not await cli.create_operator(
            cli_settings, email.upper(), password, PlatformRole.SUPPORT
        )
        db = create_database(cli_settings.db)
        try:
            async with unit_of_work(db) as session:
                actors = await session.scalars(
                    select(AuditEntry.actor_label).where(AuditEntry.action == "operators.create")
                )
                assert actors.all() == ["cli"]  # as every command of the CLI is audited
        finally:
            await db.dispose()

    async def test_create_operator_validates_as_the_api_does(
        self, cli_settings: AdminSettings
    ) -> None:
        # An operator whose email is not one could never receive a reset link.
        with pytest.raises(ValidationError):
            await cli.create_operator(
                cli_settings, "not an email at all", "a long passphrase", PlatformRole.SUPPORT
            )

    async def test_onboarding_by_script(
        self, cli_settings: AdminSettings, capsys: pytest.CaptureFixture[str]
    ) -> None:
        await cli.create_organization(cli_settings, "Scripted Fleet", "Europe/Berlin")
        org = printed(capsys)
        org_id = uuid.UUID(str(org["id"]))
        await cli.create_user(cli_settings, org_id, "ops@example.com", OrgRole.OWNER, None)
        user = printed(capsys)
        await cli.create_device(cli_settings, org_id, "cli-dev-1", "Truck", None)
        device = printed(capsys)
        await cli.create_api_key(cli_settings, org_id, "gateway", [Scope.INGEST])
        key = printed(capsys)
        await cli.replay_failed(cli_settings, org_id)
        replay = printed(capsys)

        assert org["timezone"] == "Europe/Berlin"
        assert str(user["invite_url"]).startswith("http")
        assert device["unique_id"] == "cli-dev-1"
        assert str(key["key"]).startswith(str(key["prefix"]))
        assert replay == {"replayed": [], "published": 0}

    async def test_status_command(
        self, cli_settings: AdminSettings, capsys: pytest.CaptureFixture[str]
    ) -> None:
        await cli.print_status(cli_settings)

        assert {"queues", "workers", "database_bytes"} <= set(printed(capsys))

    def test_unknown_organization_fails_with_one_line(self, cli_settings: AdminSettings) -> None:
        env = {
            **os.environ,
            "MILEPOST_ENV": "test",
            "MILEPOST_DB__URL": cli_settings.db.url,
            "MILEPOST_REDIS__URL": cli_settings.redis.url,
        }

        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "milepost_admin.cli",
                "create-device",
                "--org",
                str(uuid.uuid4()),
                "--unique-id",
                "x",
                "--name",
                "y",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert result.returncode == 1
        assert result.stderr.strip() == "milepost-admin: Organization not found."

    def test_a_refused_password_is_not_printed(self, cli_settings: AdminSettings) -> None:
        # Long enough for the CLI's own check, too long for the model's (128).
        password = "never-printed-" + "p" * 130
        env = {
            **os.environ,
            "MILEPOST_ENV": "test",
            "MILEPOST_DB__URL": cli_settings.db.url,
            "MILEPOST_REDIS__URL": cli_settings.redis.url,
            cli.PASSWORD_ENV: password,
        }

        result = subprocess.run(
            [sys.executable, "-m", "milepost_admin.cli", "create-operator", "--email", "a@b.io"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert result.returncode == 1
        assert "never-printed" not in result.stderr + result.stdout
        assert result.stderr.strip() == (
            "milepost-admin: password: String should have at most 128 characters"
        )
