import subprocess
import sys

import pytest
from pydantic import ValidationError

from milepost_common.settings import CommonSettings, Environment, describe_error


class TestCommonSettings:
    def test_nested_groups_from_prefixed_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("MILEPOST_DB__URL", "postgresql://u@db.internal:5433/fleet")
        monkeypatch.setenv("MILEPOST_DB__POOL_SIZE", "7")
        settings = CommonSettings()
        assert settings.db.url == "postgresql+asyncpg://u@db.internal:5433/fleet"
        assert settings.db.pool_size == 7

    def test_conventional_aliases_fill_the_groups(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("MILEPOST_DB__URL", raising=False)
        monkeypatch.setenv("DATABASE_URL", "postgres://alias@h/db")
        monkeypatch.setenv("REDIS_URL", "redis://cache:6380/0")
        settings = CommonSettings()
        assert settings.db.url == "postgresql+asyncpg://alias@h/db"
        assert settings.redis.url == "redis://cache:6380/0"
        assert settings.redis.cache_url == "redis://cache:6380/1"

    def test_production_requires_secrets(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("MILEPOST_ENV", "production")
        with pytest.raises(ValidationError, match="JWT_KEYS"):
            CommonSettings()

    def test_local_falls_back_to_development_secrets(self) -> None:
        settings = CommonSettings(env=Environment.LOCAL)
        assert settings.auth.jwt_keys
        assert settings.auth.secrets_key is not None

    def test_error_line_names_the_variable(self) -> None:
        with pytest.raises(ValidationError) as info:
            CommonSettings(db={"url": "mysql://nope"})
        line = describe_error(info.value)
        assert line.startswith("milepost: invalid configuration: MILEPOST_DB__URL:")
        assert "\n" not in line


def test_bad_config_stops_the_process_with_one_line() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from milepost_common.settings import CommonSettings, load_settings;"
            "load_settings(CommonSettings)",
        ],
        env={"MILEPOST_DB__POOL_SIZE": "lots", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "MILEPOST_DB__POOL_SIZE" in lines[0]
