"""Admin's own secrets: its token key set and the console's cookie key, required in
production; the api's token keys are never held here."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from milepost_admin.console.tables import ConsoleAuth
from milepost_admin.settings import AdminSettings

KEY = "k" * 48


class TestProduction:
    def test_requires_the_admin_token_keys_and_the_cookie_key(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("MILEPOST_ENV", "production")
        monkeypatch.setenv("MILEPOST_AUTH__SECRETS_KEY", KEY)
        monkeypatch.setenv("MILEPOST_AUTH__JWT_KEYS", f'{{"api-1": "{KEY}"}}')  # not admin's
        with pytest.raises(ValidationError, match="MILEPOST_AUTH__ADMIN_JWT_KEYS"):
            AdminSettings()

        monkeypatch.setenv("MILEPOST_AUTH__ADMIN_JWT_KEYS", f'{{"admin-1": "{KEY}"}}')
        with pytest.raises(ValidationError, match="MILEPOST_ADMIN__COOKIE_KEY"):
            AdminSettings()

        monkeypatch.setenv("MILEPOST_ADMIN__COOKIE_KEY", KEY)
        settings = AdminSettings()
        assert set(settings.auth.admin_jwt_keys) == {"admin-1"}
        assert settings.auth.jwt_keys == {}  # the api's keys, given by mistake, are dropped


class TestCookieSecrets:
    def test_derived_from_the_cookie_key_alone_one_per_purpose(
        self, settings_factory: Callable[..., AdminSettings]
    ) -> None:
        settings = settings_factory(AdminSettings, admin={"cookie_key": KEY})
        other_token_keys = settings_factory(
            AdminSettings,
            admin={"cookie_key": KEY},
            auth={"admin_jwt_keys": {"rotated": "r" * 40}},
        )
        other_cookie_key = settings_factory(AdminSettings, admin={"cookie_key": "c" * 48})

        state = settings.cookie_secret("oidc-state")
        assert state == other_token_keys.cookie_secret("oidc-state")
        assert state != other_cookie_key.cookie_secret("oidc-state")
        assert state != settings.cookie_secret("sqladmin")
        token_keys = {key.get_secret_value() for key in settings.auth.admin_jwt_keys.values()}
        assert not {state, settings.cookie_secret("sqladmin")} & token_keys

    def test_sqladmin_signs_its_session_with_its_own_derived_key(
        self, settings_factory: Callable[..., AdminSettings]
    ) -> None:
        settings = settings_factory(AdminSettings, admin={"cookie_key": KEY})

        [middleware] = ConsoleAuth(FastAPI(), settings).middlewares

        assert middleware.kwargs["secret_key"] == settings.cookie_secret("sqladmin")
