"""``milepost-admin``: serve the admin app, and what an operator scripts."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from milepost_admin.settings import AdminSettings, get_settings
from milepost_common.auth import PasswordHasher
from milepost_common.db import create_database, unit_of_work
from milepost_common.domain.principals import SYSTEM
from milepost_common.domain.users import service as user_service
from milepost_common.domain.users.models import PlatformRole

PASSWORD_ENV = "MILEPOST_BOOTSTRAP_PASSWORD"  # noqa: S105 - a variable name
MIN_PASSWORD_LENGTH = 12


def _read_password() -> str:
    password = os.environ.get(PASSWORD_ENV) or sys.stdin.readline().rstrip("\n")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise SystemExit(
            f"milepost-admin: the password needs at least {MIN_PASSWORD_LENGTH} characters"
        )
    return password


async def create_operator(
    settings: AdminSettings, email: str, password: str, role: PlatformRole
) -> bool:
    """Create the operator; False when the email already exists (the command is idempotent)."""
    db = create_database(settings.db, application_name="milepost-admin-cli")
    try:
        async with unit_of_work(db) as session:
            if await user_service.find_user_by_email(session, email) is not None:
                return False
            password_hash = await PasswordHasher(settings.auth).hash(password)
            await user_service.create_operator(
                session, SYSTEM, email=email, password_hash=password_hash, role=role
            )
            return True
    finally:
        await db.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="milepost-admin", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the admin app on MILEPOST_ADMIN__HOST:PORT")
    create = commands.add_parser(
        "create-operator",
        help=f"create a platform operator (password from stdin or {PASSWORD_ENV})",
    )
    create.add_argument("--email", required=True)
    create.add_argument(
        "--role", choices=[r.value for r in PlatformRole], default=PlatformRole.SUPERADMIN.value
    )
    args = parser.parse_args(argv)

    if args.command == "serve":
        from milepost_admin.main import serve

        serve()
    elif args.command == "create-operator":
        created = asyncio.run(
            create_operator(get_settings(), args.email, _read_password(), PlatformRole(args.role))
        )
        print("created" if created else "exists")
