"""The stack's secrets, generated once into a mode-600 file in the state directory.

Each process is given only the secrets it uses (`Credentials.app_env`), as the Kubernetes
manifests hand them out: the api's token keys reach the api alone, admin's token and cookie
keys admin alone (and its command line); the webhook secrets key the api (it creates, rotates
and test-pings webhooks) and the webhooks workers (they sign deliveries); the API key pepper
the three apps (they issue or check keys). The processing workers and beat hold none.

The file is `KEY='value'` lines, so `set -a; . secrets.env` works in a shell. Values are
generated once and never changed: missing keys (a file from an older version) are added,
present ones are kept, because rotating them would invalidate issued tokens and make the
webhook secrets already encrypted with the old key unreadable.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from milepost_devstack.errors import StackError

DEFAULT_OPERATOR_EMAIL = "admin@example.com"

# The file's key for each field: the apps' own variable names, MILEPOST_STACK_* for the rest.
_KEYS = {
    "jwt_keys": "MILEPOST_AUTH__JWT_KEYS",
    "jwt_active_kid": "MILEPOST_AUTH__JWT_ACTIVE_KID",
    "admin_jwt_keys": "MILEPOST_AUTH__ADMIN_JWT_KEYS",
    "admin_jwt_active_kid": "MILEPOST_AUTH__ADMIN_JWT_ACTIVE_KID",
    "admin_cookie_key": "MILEPOST_ADMIN__COOKIE_KEY",
    "secrets_key": "MILEPOST_AUTH__SECRETS_KEY",
    "api_key_pepper": "MILEPOST_AUTH__API_KEY_PEPPER",
    "db_password": "MILEPOST_STACK_DB_PASSWORD",
    "operator_email": "MILEPOST_BOOTSTRAP_EMAIL",
    "operator_password": "MILEPOST_BOOTSTRAP_PASSWORD",
}


# The secrets each process of the stack uses; "" is any other command of the stack (the
# admin command line, the demo), which may issue keys or create webhooks.
_USES = {
    "api": ("jwt_keys", "jwt_active_kid", "secrets_key", "api_key_pepper"),
    "admin": ("admin_jwt_keys", "admin_jwt_active_kid", "admin_cookie_key", "api_key_pepper"),
    "ingest": ("api_key_pepper",),
    "worker-webhooks": ("secrets_key",),
    "": ("secrets_key", "api_key_pepper"),
}


def _generate() -> dict[str, str]:
    kid, admin_kid = f"local-{secrets.token_hex(4)}", f"local-admin-{secrets.token_hex(4)}"
    return {
        "jwt_keys": json.dumps({kid: secrets.token_urlsafe(48)}),
        "jwt_active_kid": kid,
        "admin_jwt_keys": json.dumps({admin_kid: secrets.token_urlsafe(48)}),
        "admin_jwt_active_kid": admin_kid,
        "admin_cookie_key": secrets.token_urlsafe(48),
        # A Fernet key: urlsafe base64 of 32 random bytes.
        "secrets_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "api_key_pepper": secrets.token_urlsafe(32),
        "db_password": secrets.token_urlsafe(24),
        "operator_email": DEFAULT_OPERATOR_EMAIL,
        "operator_password": secrets.token_urlsafe(18),
    }


@dataclass(frozen=True)
class Credentials:
    """Secrets of one local stack: the apps' keys, the database password, the first operator."""

    jwt_keys: str
    jwt_active_kid: str
    admin_jwt_keys: str
    admin_jwt_active_kid: str
    admin_cookie_key: str
    secrets_key: str
    api_key_pepper: str
    db_password: str
    operator_email: str
    operator_password: str

    def app_env(self, process: str | None = None) -> dict[str, str]:
        """The secret settings `process` uses (None: any other command of the stack)."""
        return {_KEYS[field]: getattr(self, field) for field in _USES.get(process or "", ())}


def _parse(text: str) -> dict[str, str]:
    by_key = {key: field for field, key in _KEYS.items()}
    values = {}
    for line in text.splitlines():
        key, sep, raw = line.strip().partition("=")
        if sep and key in by_key:
            values[by_key[key]] = raw.strip().removeprefix("'").removesuffix("'")
    return values


def _render(values: dict[str, str]) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        f"# Secrets of the local Milepost stack (milepost-stack), since {stamp}. Mode 600.",
        "# MILEPOST_BOOTSTRAP_* is the first operator's login unless the environment gave one",
        "# when `make up` created that operator.",
    ]
    for field, key in _KEYS.items():
        value = values[field]
        if "'" in value or "\n" in value:
            raise StackError(f"{key} holds a quote or newline: it cannot be written safely")
        lines.append(f"{key}='{value}'")
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, readable by its owner only from the first byte."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    temporary.replace(path)


def load_or_create(path: Path) -> Credentials:
    """The credentials stored at `path`, generating (and storing) whatever is missing."""
    try:
        stored = _parse(path.read_text())
    except FileNotFoundError:
        stored = {}
    values = _generate() | stored
    if stored != values or path.stat().st_mode & 0o077:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, _render(values))
    return Credentials(**values)
