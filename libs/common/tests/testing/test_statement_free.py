"""The import-linter contract ``statement_free``: the apps import from SQLAlchemy and SQLModel
only what builds no statement, and never asyncpg."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

from milepost_common.testing.import_contracts import StatementFree, imported_names

ALLOWED = ["sqlalchemy.exc", "sqlalchemy.ext.asyncio", "sqlmodel.SQLModel"]


def contract() -> StatementFree:
    return StatementFree(
        name="no statements",
        session_options={"include_external_packages": "true"},
        contract_options={
            "source_modules": ["statement_app.routes"],
            "packages": ["sqlalchemy", "sqlmodel", "asyncpg"],
            "allowed": ALLOWED,
        },
    )


def app_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **modules: str) -> grimp.ImportGraph:
    """A package ``statement_app`` whose ``routes`` package holds these modules."""
    routes = tmp_path / "statement_app" / "routes"
    routes.mkdir(parents=True)
    (tmp_path / "statement_app" / "__init__.py").write_text("")
    (tmp_path / "statement_app" / "other.py").write_text("from sqlalchemy import text\n")
    (routes / "__init__.py").write_text("")
    for name, source in modules.items():
        (routes / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return grimp.build_graph("statement_app", include_external_packages=True, cache_dir=None)


class TestImportedNames:
    def test_from_imports_are_dotted_with_their_module(self) -> None:
        source = "from sqlalchemy import exc as e, text\nimport sqlalchemy.sql\n"
        assert sorted(imported_names(source)) == [
            (1, "sqlalchemy.exc"),
            (1, "sqlalchemy.text"),
            (2, "sqlalchemy.sql"),
        ]

    def test_relative_imports_are_left_out(self) -> None:
        assert list(imported_names("from . import text\nfrom .x import select\n")) == []


class TestStatementFree:
    def test_kept_with_sessions_errors_and_the_table_base(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        graph = app_with(
            tmp_path,
            monkeypatch,
            trips="from sqlalchemy.ext.asyncio import AsyncSession\n"
            "from sqlalchemy import exc as sa_exc\n"
            "from sqlmodel import SQLModel\n",
        )
        assert contract().check(graph, verbose=False).kept

    def test_broken_by_a_statement_builder_even_over_several_lines_or_lazily(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        graph = app_with(
            tmp_path,
            monkeypatch,
            trips="from sqlmodel import (\n    SQLModel,\n    select,\n)\n",
            alerts="async def read() -> None:\n"
            "    import asyncpg\n"
            "    from sqlalchemy import text\n",
        )
        check = contract().check(graph, verbose=False)
        assert not check.kept
        assert check.metadata["imports"] == [
            ("statement_app.routes.alerts", 2, "asyncpg"),
            ("statement_app.routes.alerts", 3, "sqlalchemy.text"),
            ("statement_app.routes.trips", 1, "sqlmodel.select"),
        ]

    def test_modules_outside_the_sources_are_not_its_business(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # statement_app.other imports text; only statement_app.routes is checked.
        graph = app_with(tmp_path, monkeypatch, trips="import json\n")
        assert contract().check(graph, verbose=False).kept
