import subprocess
import sys

import pytest
from pydantic import ValidationError

from milepost_common.settings import CommonSettings, Environment, describe_error


class ApiLike(CommonSettings):
    token_realms = ("api",)


class AdminLike(CommonSettings):
    token_realms = ("admin",)


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

    def test_production_requires_the_secrets_key_where_it_is_used(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("MILEPOST_ENV", "production")
        monkeypatch.delenv("MILEPOST_AUTH__SECRETS_KEY", raising=False)

        class UsesSecrets(CommonSettings):
            uses_secrets_key = True

        with pytest.raises(ValidationError, match="SECRETS_KEY"):
            UsesSecrets()
        # Elsewhere it need not be given, and no development key is filled in.
        assert CommonSettings().auth.secrets_key is None

    @pytest.mark.parametrize(
        ("cls", "variable"),
        [(ApiLike, "MILEPOST_AUTH__JWT_KEYS"), (AdminLike, "MILEPOST_AUTH__ADMIN_JWT_KEYS")],
    )
    def test_production_requires_the_key_set_of_each_realm_served(
        self, monkeypatch: pytest.MonkeyPatch, cls: type[CommonSettings], variable: str
    ) -> None:
        monkeypatch.setenv("MILEPOST_ENV", "production")
        monkeypatch.setenv("MILEPOST_AUTH__SECRETS_KEY", "k" * 44)
        with pytest.raises(ValidationError, match=variable):
            cls()

    def test_a_process_serving_no_realm_needs_no_token_keys(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("MILEPOST_ENV", "production")
        monkeypatch.setenv("MILEPOST_AUTH__SECRETS_KEY", "k" * 44)
        settings = CommonSettings()
        assert settings.auth.jwt_keys == settings.auth.admin_jwt_keys == {}

    def test_keys_of_a_realm_not_served_are_dropped(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("MILEPOST_AUTH__JWT_KEYS", '{"api-1": "' + "a" * 40 + '"}')
        monkeypatch.setenv("MILEPOST_AUTH__ADMIN_JWT_KEYS", '{"admin-1": "' + "b" * 40 + '"}')
        api, admin, neither = ApiLike(), AdminLike(), CommonSettings()
        assert (set(api.auth.jwt_keys), api.auth.admin_jwt_keys) == ({"api-1"}, {})
        assert (admin.auth.jwt_keys, set(admin.auth.admin_jwt_keys)) == ({}, {"admin-1"})
        assert neither.auth.jwt_keys == neither.auth.admin_jwt_keys == {}

    def test_an_active_kid_must_name_a_key_of_its_set(self) -> None:
        with pytest.raises(ValidationError, match="ADMIN_JWT_ACTIVE_KID"):
            AdminLike(auth={"admin_jwt_keys": {"a1": "a" * 40}, "admin_jwt_active_kid": "a2"})

    def test_local_falls_back_to_development_secrets(self) -> None:
        api, admin = ApiLike(env=Environment.LOCAL), AdminLike(env=Environment.LOCAL)
        assert api.auth.jwt_keys
        assert admin.auth.admin_jwt_keys
        api_keys = {k.get_secret_value() for k in api.auth.jwt_keys.values()}
        admin_keys = {k.get_secret_value() for k in admin.auth.admin_jwt_keys.values()}
        assert not api_keys & admin_keys
        assert api.auth.secrets_key is not None

    def test_error_line_names_the_variable(self) -> None:
        with pytest.raises(ValidationError) as info:
            CommonSettings(db={"url": "mysql://nope"})
        line = describe_error(info.value)
        assert line.startswith("milepost: invalid configuration: MILEPOST_DB__URL:")
        assert "\n" not in line


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MILEPOST_DB__POOL_SIZE", "lots"),
        # A mapping that is not JSON never reaches validation: pydantic-settings refuses it
        # first (and a traceback naming only its group was printed).
        ("MILEPOST_AUTH__JWT_KEYS", "a-secret"),
    ],
)
def test_bad_config_stops_the_process_with_one_line(name: str, value: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from milepost_common.settings import CommonSettings, load_settings;"
            "load_settings(CommonSettings)",
        ],
        env={name: value, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"milepost: invalid configuration: {name}:")
