"""The feature template (docs/architecture.md) held by the tree: every ``domain/<feature>/``
keeps its statements in ``repository.py`` and its error classes in ``errors.py``, and the
retired shapes (``queries.py``, ``admin_service.py``, ``admin_schemas.py``) stay gone.

The import rules (no repository imported by a route, a console page or a worker handler; no
import cycle in the domain) are import-linter contracts in pyproject.toml."""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Iterator
from pathlib import Path

import milepost_common.domain

DOMAIN = Path(milepost_common.domain.__file__).parent
FEATURES = sorted(p for p in DOMAIN.iterdir() if (p / "__init__.py").is_file())
RETIRED = frozenset({"queries.py", "admin_service.py", "admin_schemas.py"})
# The domain's own building blocks of statements, used by the repositories.
BUILDING_BLOCKS = frozenset({"base.py", "paging.py"})
# A session asked to run something: a statement, a lookup, a refresh, a raw connection.
SESSION_CALLS = frozenset(
    {"execute", "scalar", "scalars", "get", "stream", "stream_scalars", "refresh", "connection"}
)
STATEMENT_BUILDERS = frozenset({"select", "insert", "update", "delete", "text"})
REPOSITORY_HELPERS = frozenset(
    {"find_by_id", "org_page", "sorted_page", "keyset", "page_of", "time_window"}
)


def relative(path: Path) -> str:
    return path.relative_to(DOMAIN).as_posix()


def feature_modules() -> Iterator[Path]:
    for feature in FEATURES:
        yield from sorted(feature.glob("*.py"))


def statement_code(path: Path) -> list[str]:
    """Where the module builds or runs a statement, as ``line: what``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            ("sqlalchemy", "sqlmodel")
        ):
            built = {alias.name for alias in node.names} & STATEMENT_BUILDERS
            if path.name == "models.py":
                built.discard("text")  # server defaults and partial indexes of the tables
            found += [f"{node.lineno}: imports {name}" for name in sorted(built)]
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in SESSION_CALLS:
                receiver = func.value
                if (isinstance(receiver, ast.Name) and receiver.id == "session") or (
                    isinstance(receiver, ast.Attribute) and receiver.attr == "session"
                ):
                    found.append(f"{node.lineno}: session.{func.attr}()")
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in REPOSITORY_HELPERS:
                found.append(f"{node.lineno}: {name}()")
    return found


def test_the_features_are_found() -> None:
    names = {feature.name for feature in FEATURES}
    assert {"devices", "trips", "alerts", "operators", "ingest_batches"} <= names


def test_no_feature_keeps_a_retired_module() -> None:
    retired = [relative(p) for p in feature_modules() if p.name in RETIRED]
    assert retired == []


def test_statements_live_in_the_repositories() -> None:
    elsewhere = {
        relative(path): found
        for path in [*feature_modules(), *sorted(DOMAIN.glob("*.py"))]
        if path.name != "repository.py" and path.name not in BUILDING_BLOCKS
        if (found := statement_code(path))
    }
    assert elsewhere == {}


def test_error_classes_live_in_errors_py() -> None:
    misplaced = []
    for path in feature_modules():
        module_name = f"milepost_common.domain.{path.parent.name}.{path.stem}"
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, Exception)
                and value.__module__ == module_name
                and not name.startswith("_")  # a module's own control flow
                and path.name != "errors.py"
            ):
                misplaced.append(f"{module_name}.{name}")
    assert misplaced == []
