"""Import-linter contracts the built-in ones do not offer (``lint-imports`` in ``make test``;
pyproject.toml registers them): no import cycle among the modules of a package, and no
statement built outside the domain's repositories.

``acyclic_siblings`` judges sibling packages as wholes: a feature whose repository reads
another feature's tables while that one's service calls the first one's service counts as a
cycle there, though no module imports back. This contract follows modules, so a cycle is one
that Python itself would meet (``users.service`` -> ``sessions.service`` -> ``users.service``).

    [tool.importlinter]
    contract_types = ["acyclic_modules: milepost_common.testing.import_contracts.AcyclicModules"]

    [[tool.importlinter.contracts]]
    type = "acyclic_modules"
    packages = ["milepost_common.domain"]

``statement_free`` follows names, not modules: the built-in ``forbidden`` contract can only
forbid a whole external package (``sqlalchemy``), and an app needs ``AsyncSession`` and
SQLAlchemy's errors while it must never import ``text`` or ``select``. It reads each import
statement (lazy ones and those under ``TYPE_CHECKING`` included) of the modules that import
one of ``packages``, and lets through only what ``allowed`` names or is under it.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator, Mapping, Sequence, Set
from pathlib import Path
from typing import cast

import grimp
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck

# Imports of a cycle shown in a broken contract's report.
MAX_IMPORTS_SHOWN = 12


def import_cycles(imports: Mapping[str, Set[str]]) -> list[list[str]]:
    """The modules that import one another in a cycle, one sorted list per cycle (a strongly
    connected component of more than one module, or a module importing itself), sorted.
    ``imports`` maps each module to the modules it imports directly; Tarjan's algorithm,
    without recursion."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    for root in sorted(imports):
        if root in index:
            continue
        work = [(root, iter(sorted(imports.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, pending = work[-1]
            imported = next(pending, None)
            if imported is not None:
                if imported not in index:
                    index[imported] = low[imported] = len(index)
                    stack.append(imported)
                    on_stack.add(imported)
                    work.append((imported, iter(sorted(imports.get(imported, ())))))
                elif imported in on_stack:
                    low[module] = min(low[module], index[imported])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
            if low[module] == index[module]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1 or module in imports.get(module, ()):
                    cycles.append(sorted(component))
    return sorted(cycles)


class AcyclicModules(Contract):
    """Broken when modules under one of ``packages`` import one another in a cycle."""

    type_name = "acyclic_modules"

    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:  # noqa: ARG002
        found: list[list[tuple[str, str]]] = []
        for package in self.packages:  # type: ignore[attr-defined]
            modules = {package, *graph.find_descendants(package)}
            imports = {m: graph.find_modules_directly_imported_by(m) & modules for m in modules}
            for cycle in import_cycles(imports):
                members = set(cycle)
                found.append(
                    [(m, imported) for m in cycle for imported in sorted(imports[m] & members)]
                )
        return ContractCheck(kept=not found, metadata={"cycles": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for edges in check.metadata["cycles"]:
            modules = sorted({importer for importer, _ in edges})
            output.print_error(f"These {len(modules)} modules import one another in a cycle:")
            output.new_line()
            for importer, imported in edges[:MAX_IMPORTS_SHOWN]:
                output.print_error(f"- {importer} -> {imported}")
            if len(edges) > MAX_IMPORTS_SHOWN:
                output.print_error(f"(and {len(edges) - MAX_IMPORTS_SHOWN} more imports)")
            output.new_line()


def imported_names(source: str) -> Iterator[tuple[int, str]]:
    """``(line, dotted name)`` of everything the source imports absolutely:
    ``from a.b import c`` gives ``a.b.c``, ``import a.b`` gives ``a.b``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield from ((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)


def is_under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def source_path(module: str) -> Path:
    """The file of a module, found from its top-level package without importing the module
    (nor its parent packages)."""
    root, *rest = module.split(".")
    spec = importlib.util.find_spec(root)
    if spec is None or spec.origin is None:
        raise ValueError(f"{root} is not importable")
    path = Path(spec.origin).parent.joinpath(*rest)
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


class StatementFree(Contract):
    """Broken when a module under ``source_modules`` imports from one of ``packages`` (top-
    level external packages) a name that is not ``allowed`` (dotted names; what is under an
    allowed name is allowed)."""

    type_name = "statement_free"

    source_modules = fields.ListField(subfield=fields.StringField())
    packages = fields.ListField(subfield=fields.StringField())
    allowed = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:  # noqa: ARG002
        packages = cast("list[str]", self.packages)
        allowed = cast("list[str]", self.allowed)
        found: list[tuple[str, int, str]] = []
        for source in cast("list[str]", self.source_modules):
            for module in sorted({source, *graph.find_descendants(source)}):
                imported = graph.find_modules_directly_imported_by(module)
                if not any(package in imported for package in packages):
                    continue
                text = source_path(module).read_text(encoding="utf-8")
                found.extend(
                    (module, line, name)
                    for line, name in sorted(imported_names(text))
                    if is_under(name, packages) and not is_under(name, allowed)
                )
        return ContractCheck(kept=not found, metadata={"imports": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for module, line, name in check.metadata["imports"]:
            output.print_error(f"- {module}:{line} imports {name}")
        output.new_line()
