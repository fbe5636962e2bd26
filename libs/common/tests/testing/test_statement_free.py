"""The import-linter contract ``statement_free``: the apps import from SQLAlchemy and SQLModel
only what builds no statement, and never asyncpg."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grimp
import pytest

from milepost_common.testing.import_contracts import StatementFree, imported_names

Found = list[tuple[str, int, str]]


@pytest.fixture
def violations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Found]:
    """``violations(**modules)``: what the contract finds in a package ``statement_app``
    whose ``routes`` package (the one checked) holds these modules; [] when it is kept."""
    root = tmp_path / "statement_app"
    routes = root / "routes"
    routes.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "other.py").write_text("from sqlalchemy import text\n")
    (routes / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))

    def found(**modules: str) -> Found:
        for name, source in modules.items():
            (routes / f"{name}.py").write_text(source)
        graph = grimp.build_graph("statement_app", include_external_packages=True, cache_dir=None)
        contract = StatementFree(
            name="no statements",
            session_options={"include_external_packages": "true"},
            contract_options={
                "source_modules": ["statement_app.routes"],
                "packages": ["sqlalchemy", "sqlmodel", "asyncpg"],
                "allowed": ["sqlalchemy.exc", "sqlalchemy.ext.asyncio", "sqlmodel.SQLModel"],
            },
        )
        check = contract.check(graph, verbose=False)
        assert check.kept == (not check.metadata["imports"])
        imports: Found = check.metadata["imports"]
        return imports

    return found


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
        self, violations: Callable[..., Found]
    ) -> None:
        trips = (
            "from sqlalchemy.ext.asyncio import AsyncSession\n"
            "from sqlalchemy import exc as sa_exc\n"
            "from sqlmodel import SQLModel\n"
        )
        assert violations(trips=trips) == []

    def test_broken_by_a_statement_builder_even_over_several_lines_or_lazily(
        self, violations: Callable[..., Found]
    ) -> None:
        assert violations(
            trips="from sqlmodel import (\n    SQLModel,\n    select,\n)\n",
            alerts="async def read() -> None:\n"
            "    import asyncpg\n"
            "    from sqlalchemy import text\n",
        ) == [
            ("statement_app.routes.alerts", 2, "asyncpg"),
            ("statement_app.routes.alerts", 3, "sqlalchemy.text"),
            ("statement_app.routes.trips", 1, "sqlmodel.select"),
        ]

    def test_modules_outside_the_sources_are_not_its_business(
        self, violations: Callable[..., Found]
    ) -> None:
        # statement_app.other imports text; only statement_app.routes is checked.
        assert violations(trips="import json\n") == []
