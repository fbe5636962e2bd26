"""``milepost-migrate --check``: what Kubernetes' init containers wait on before a release's
pods start (deploy/kubernetes)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from milepost_common.migrate import check, database_heads, main, release_heads


async def set_version(url: str, version: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": version})
    finally:
        await engine.dispose()


async def test_a_migrated_database_passes(database_url: str) -> None:
    assert await database_heads(database_url) == release_heads()
    assert await check(database_url) is None


async def test_a_database_behind_the_release_fails_and_says_what_it_needs(
    committed_database: str,
) -> None:
    await set_version(committed_database, "0001_older")

    problem = await check(committed_database)

    assert problem is not None
    assert "0001_older" in problem
    assert all(head in problem for head in release_heads())


async def test_waits_until_the_migration_has_run(committed_database: str) -> None:
    (head,) = release_heads()
    await set_version(committed_database, "0001_older")

    waiting = asyncio.create_task(check(committed_database, wait_s=10, interval_s=0.1))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await set_version(committed_database, head)

    assert await asyncio.wait_for(waiting, 5) is None


async def test_an_unreachable_database_is_not_ready() -> None:
    problem = await check("postgresql+asyncpg://milepost@127.0.0.1:1/milepost", interval_s=0.1)

    assert problem is not None
    assert problem.startswith("cannot read the schema version")


def test_the_command_exits_1_with_one_line(
    committed_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(set_version(committed_database, "0001_older"))
    monkeypatch.setenv("MILEPOST_DB__URL", committed_database)

    with pytest.raises(SystemExit) as exit_info:
        main(["--check"])

    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("milepost-migrate: the schema is at 0001_older")
    assert err.count("\n") == 1


def test_the_command_exits_0_at_head(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MILEPOST_DB__URL", database_url)

    main(["--check", "--wait", "5"])

    assert "head" in capsys.readouterr().out
