"""``milepost-admin``: serve the admin app, and what an operator scripts.

Every command goes through the same domain services as the API (validation, hashing,
audit with the actor ``cli``); results are printed as JSON, one object per line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from milepost_admin.links import invite_url
from milepost_admin.settings import AdminSettings, get_settings
from milepost_common.auth import PasswordHasher
from milepost_common.db import create_database, unit_of_work
from milepost_common.domain.api_keys import service as api_key_service
from milepost_common.domain.api_keys.models import Scope
from milepost_common.domain.devices import service as device_service
from milepost_common.domain.devices.schemas import DeviceRead, VehicleCreate
from milepost_common.domain.ingest_batches import operators as batch_operators
from milepost_common.domain.operators import service as operator_service
from milepost_common.domain.operators.schemas import OperatorCreate
from milepost_common.domain.organizations import service as org_service
from milepost_common.domain.organizations.schemas import OrganizationCreate, OrganizationRead
from milepost_common.domain.principals import Principal, PrincipalKind
from milepost_common.domain.system import service as system_service
from milepost_common.domain.users import service as user_service
from milepost_common.domain.users.models import OrgRole, PlatformRole
from milepost_common.domain.users.schemas import UserCreate, UserRead
from milepost_common.errors import AppError
from milepost_common.tasks import (
    INGEST_BATCHES_PROCESS,
    QUEUES,
    WORKER_HEARTBEAT_PREFIX,
    WORKER_HEARTBEAT_STALE_S,
    Publisher,
)
from milepost_common.web.errors import validation_details

CLI = Principal(PrincipalKind.SYSTEM, None, None, "cli")

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
    """Create the operator; False when the email already exists (the command is idempotent).
    Raises ValidationError for an email or a password the API would refuse."""
    data = OperatorCreate(email=email, role=role, password=password)
    db = create_database(settings.db, application_name="milepost-admin-cli")
    try:
        async with unit_of_work(db) as session:
            if await user_service.find_user_by_email(session, data.email) is not None:
                return False
            await operator_service.create_operator(
                session,
                CLI,
                email=data.email,
                role=data.role,
                password=data.password,
                hasher=PasswordHasher(settings.auth),
            )
            return True
    finally:
        await db.dispose()


def _problems(exc: ValidationError) -> str:
    """Each refused field and why, never what was sent: pydantic's own text quotes the
    input, a password among them."""
    return "; ".join(
        f"{'.'.join(str(p) for p in d['loc'])}: {d['msg']}"
        for d in validation_details(exc.errors())
    )


def _print(model: BaseModel | dict[str, Any]) -> None:
    data = model.model_dump(mode="json") if isinstance(model, BaseModel) else model
    print(orjson.dumps(data).decode())


async def _run(settings: AdminSettings, work: Callable[[AsyncSession], Awaitable[None]]) -> None:
    db = create_database(settings.db, application_name="milepost-admin-cli")
    try:
        async with unit_of_work(db) as session:
            await work(session)
    finally:
        await db.dispose()


async def create_organization(settings: AdminSettings, name: str, timezone: str) -> None:
    async def work(session: AsyncSession) -> None:
        data = OrganizationCreate(name=name, timezone=timezone)
        _print(
            OrganizationRead.model_validate(
                await org_service.create_organization(session, CLI, data)
            )
        )

    await _run(settings, work)


async def create_user(
    settings: AdminSettings, org_id: uuid.UUID, email: str, role: OrgRole, password: str | None
) -> None:
    async def work(session: AsyncSession) -> None:
        org = await org_service.get_organization(session, org_id)
        data = UserCreate(email=email, role=role, password=password)
        created = await user_service.create_user(
            session, CLI, org.id, data, hasher=PasswordHasher(settings.auth)
        )
        link = invite_url(settings, created.invitation_token) if created.invitation_token else None
        _print(
            {**UserRead.model_validate(created.user).model_dump(mode="json"), "invite_url": link}
        )

    await _run(settings, work)


async def create_device(
    settings: AdminSettings, org_id: uuid.UUID, unique_id: str, name: str, plate: str | None
) -> None:
    async def work(session: AsyncSession) -> None:
        org = await org_service.get_organization(session, org_id)
        data = VehicleCreate(unique_id=unique_id, name=name, plate=plate)
        device = await device_service.register_device(session, CLI, data, org_id=org.id)
        _print(DeviceRead.model_validate(device))

    await _run(settings, work)


async def create_api_key(
    settings: AdminSettings, org_id: uuid.UUID, name: str, scopes: list[Scope]
) -> None:
    async def work(session: AsyncSession) -> None:
        org = await org_service.get_organization(session, org_id)
        issued = await api_key_service.issue_api_key(
            session,
            CLI,
            org.id,
            name,
            scopes=scopes,
            pepper=settings.auth.api_key_pepper.get_secret_value(),
        )
        _print(
            {"id": str(issued.api_key.id), "prefix": issued.api_key.prefix, "key": issued.secret}
        )

    await _run(settings, work)


async def replay_failed(settings: AdminSettings, org_id: uuid.UUID) -> None:
    replayed: list[uuid.UUID] = []

    async def work(session: AsyncSession) -> None:
        org = await org_service.get_organization(session, org_id)
        replayed.extend(
            b.id for b in await batch_operators.replay_failed_batches(session, CLI, org.id)
        )

    await _run(settings, work)
    publisher = Publisher(settings.redis, settings.celery)
    try:
        sent = [await publisher.send(INGEST_BATCHES_PROCESS, str(b)) for b in replayed]
    finally:
        publisher.close()
    _print({"replayed": [str(b) for b in replayed], "published": sum(sent)})


async def print_status(settings: AdminSettings) -> None:
    broker = Redis.from_url(
        settings.redis.url,
        socket_timeout=settings.redis.socket_timeout_s,
        socket_connect_timeout=settings.redis.socket_timeout_s,
    )

    async def work(session: AsyncSession) -> None:
        target = system_service.Broker(
            broker, QUEUES, WORKER_HEARTBEAT_PREFIX, WORKER_HEARTBEAT_STALE_S
        )
        _print(await system_service.get_system_status(session, target))

    try:
        await _run(settings, work)
    finally:
        await broker.aclose()


def _uuid(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {raw!r}") from None


def _commands(parser: argparse.ArgumentParser) -> None:
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
    org = commands.add_parser("create-organization", help="create an organization")
    org.add_argument("--name", required=True)
    org.add_argument("--timezone", default="UTC")
    user = commands.add_parser(
        "create-user",
        help=f"create a user; with --password-from-env the password is read from {PASSWORD_ENV}, "
        "otherwise an invitation link is printed",
    )
    user.add_argument("--org", type=_uuid, required=True)
    user.add_argument("--email", required=True)
    user.add_argument("--role", choices=[r.value for r in OrgRole], default=OrgRole.VIEWER.value)
    user.add_argument("--password-from-env", action="store_true")
    device = commands.add_parser("create-device", help="register a device")
    device.add_argument("--org", type=_uuid, required=True)
    device.add_argument("--unique-id", required=True)
    device.add_argument("--name", required=True)
    device.add_argument("--plate")
    key = commands.add_parser("create-api-key", help="issue an API key (printed once)")
    key.add_argument("--org", type=_uuid, required=True)
    key.add_argument("--name", required=True)
    key.add_argument("--scope", action="append", choices=[s.value for s in Scope], dest="scopes")
    replay = commands.add_parser("replay-failed", help="replay an organization's failed batches")
    replay.add_argument("--org", type=_uuid, required=True)
    commands.add_parser("status", help="print the system status")


def _dispatch(args: argparse.Namespace, settings: AdminSettings) -> Coroutine[Any, Any, None]:
    if args.command == "create-organization":
        return create_organization(settings, args.name, args.timezone)
    if args.command == "create-user":
        password = _read_password() if args.password_from_env else None
        return create_user(settings, args.org, args.email, OrgRole(args.role), password)
    if args.command == "create-device":
        return create_device(settings, args.org, args.unique_id, args.name, args.plate)
    if args.command == "create-api-key":
        scopes = [Scope(s) for s in args.scopes or [Scope.INGEST.value]]
        return create_api_key(settings, args.org, args.name, scopes)
    if args.command == "replay-failed":
        return replay_failed(settings, args.org)
    return print_status(settings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="milepost-admin", description=__doc__)
    _commands(parser)
    args = parser.parse_args(argv)

    if args.command == "serve":
        from milepost_admin.main import serve

        serve()
    else:
        try:
            if args.command == "create-operator":
                created = asyncio.run(
                    create_operator(
                        get_settings(), args.email, _read_password(), PlatformRole(args.role)
                    )
                )
                print("created" if created else "exists")
            else:
                asyncio.run(_dispatch(args, get_settings()))
        except (AppError, ValidationError) as exc:
            message = exc.message if isinstance(exc, AppError) else _problems(exc)
            raise SystemExit(f"milepost-admin: {message}") from None


if __name__ == "__main__":
    main()
