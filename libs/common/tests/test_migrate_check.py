"""``milepost-migrate --check``: what Kubernetes' init containers wait on before a release's
pods start (deploy/kubernetes)."""

from __future__ import annotations

import asyncio

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from milepost_common.migrate import (
    alembic_config,
    check,
    database_heads,
    main,
    release_heads,
)

NEXT_RELEASE = "0099_next_release"


async def execute(url: str, *statements: tuple[str, dict[str, str]]) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            for statement, params in statements:
                await conn.execute(text(statement), params)
    finally:
        await engine.dispose()


def this_head() -> str:
    (head,) = release_heads()
    return head


async def move_back(url: str) -> str:
    """Leave the database as it was before this release's last migration; its revision."""
    previous = ScriptDirectory.from_config(alembic_config()).get_revision(this_head())
    assert previous is not None
    assert isinstance(previous.down_revision, str)
    await execute(
        url,
        ("UPDATE alembic_version SET version_num = :v", {"v": previous.down_revision}),
        ("DELETE FROM schema_revisions WHERE revision = :v", {"v": this_head()}),
    )
    return previous.down_revision


async def apply(url: str, revision: str) -> None:
    """What migrating to ``revision`` leaves: alembic_version at it, the revision recorded."""
    await execute(
        url,
        ("UPDATE alembic_version SET version_num = :v", {"v": revision}),
        (
            "INSERT INTO schema_revisions (revision) VALUES (:v) ON CONFLICT DO NOTHING",
            {"v": revision},
        ),
    )


async def test_a_migrated_database_passes(database_url: str) -> None:
    assert await database_heads(database_url) == release_heads()
    assert await check(database_url) is None


async def test_every_revision_applied_is_recorded(database_url: str) -> None:
    revisions = ScriptDirectory.from_config(alembic_config()).walk_revisions()

    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            recorded = set(await conn.scalars(text("SELECT revision FROM schema_revisions")))
    finally:
        await engine.dispose()

    assert recorded == {script.revision for script in revisions}


async def test_a_database_behind_the_release_fails_and_says_what_it_needs(
    committed_database: str,
) -> None:
    previous = await move_back(committed_database)

    problem = await check(committed_database)

    assert problem is not None
    assert previous in problem
    assert this_head() in problem


async def test_a_database_past_the_release_passes(committed_database: str) -> None:
    await apply(committed_database, NEXT_RELEASE)

    assert await check(committed_database) is None


async def test_waits_until_the_migration_has_run(committed_database: str) -> None:
    await move_back(committed_database)

    waiting = asyncio.create_task(check(committed_database, wait_s=10, interval_s=0.1))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await apply(committed_database, this_head())

    assert await asyncio.wait_for(waiting, 5) is None


async def test_an_unreachable_database_is_not_ready() -> None:
    problem = await check("postgresql+asyncpg://milepost@127.0.0.1:1/milepost", interval_s=0.1)

    assert problem is not None
    assert problem.startswith("cannot read the schema version")


def test_the_command_exits_1_with_one_line(
    committed_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    previous = asyncio.run(move_back(committed_database))
    monkeypatch.setenv("MILEPOST_DB__URL", committed_database)

    with pytest.raises(SystemExit) as exit_info:
        main(["--check"])

    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"milepost-migrate: the schema is at {previous};")
    assert err.count("\n") == 1


def test_the_command_exits_0_at_head(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MILEPOST_DB__URL", database_url)

    main(["--check", "--wait", "5"])

    assert "head" in capsys.readouterr().out


def test_the_command_exits_0_past_head(
    committed_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pod of this release restarting once the next release's migration has run."""
    asyncio.run(apply(committed_database, NEXT_RELEASE))
    monkeypatch.setenv("MILEPOST_DB__URL", committed_database)

    main(["--check"])

    assert "head" in capsys.readouterr().out
