"""Stack secrets: generated once, private, stable, completed when a key is missing."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

from milepost_devstack.credentials import load_or_create


class TestLoadOrCreate:
    def test_first_run_writes_a_private_file(self, tmp_path: Path) -> None:
        path = tmp_path / "secrets.env"

        load_or_create(path)

        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_later_runs_return_the_same_secrets(self, tmp_path: Path) -> None:
        path = tmp_path / "secrets.env"

        assert load_or_create(path) == load_or_create(path)

    def test_a_missing_key_is_added_and_the_others_kept(self, tmp_path: Path) -> None:
        path = tmp_path / "secrets.env"
        first = load_or_create(path)
        path.write_text(
            "\n".join(
                line
                for line in path.read_text().splitlines()
                if not line.startswith("MILEPOST_AUTH__API_KEY_PEPPER")
            )
        )

        second = load_or_create(path)

        assert second.secrets_key == first.secrets_key
        assert second.api_key_pepper != first.api_key_pepper
        assert "MILEPOST_AUTH__API_KEY_PEPPER=" in path.read_text()

    def test_loose_permissions_are_tightened(self, tmp_path: Path) -> None:
        path = tmp_path / "secrets.env"
        load_or_create(path)
        path.chmod(0o644)

        load_or_create(path)

        assert stat.S_IMODE(path.stat().st_mode) == 0o600


class TestAppEnv:
    def test_holds_the_settings_the_apps_read(self, tmp_path: Path) -> None:
        credentials = load_or_create(tmp_path / "secrets.env")
        env, admin = credentials.app_env("api"), credentials.app_env("admin")

        keys = json.loads(env["MILEPOST_AUTH__JWT_KEYS"])
        assert env["MILEPOST_AUTH__JWT_ACTIVE_KID"] in keys
        admin_keys = json.loads(admin["MILEPOST_AUTH__ADMIN_JWT_KEYS"])
        assert admin["MILEPOST_AUTH__ADMIN_JWT_ACTIVE_KID"] in admin_keys
        assert not set(keys.values()) & set(admin_keys.values())
        assert admin["MILEPOST_ADMIN__COOKIE_KEY"]
        assert len(base64.urlsafe_b64decode(env["MILEPOST_AUTH__SECRETS_KEY"])) == 32
        assert env["MILEPOST_AUTH__API_KEY_PEPPER"]

    def test_file_is_shell_sourceable(self, tmp_path: Path) -> None:
        path = tmp_path / "secrets.env"
        env = load_or_create(path).app_env("api")

        lines = path.read_text().splitlines()
        line = next(line for line in lines if line.startswith("MILEPOST_AUTH__JWT_KEYS"))

        assert line == f"MILEPOST_AUTH__JWT_KEYS='{env['MILEPOST_AUTH__JWT_KEYS']}'"
