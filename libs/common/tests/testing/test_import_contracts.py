"""The import-linter contract ``acyclic_modules``: cycles among modules, whatever packages
they sit in."""

from __future__ import annotations

import grimp

from milepost_common.testing.import_contracts import AcyclicModules, import_cycles


def graph_of(*imports: tuple[str, str]) -> grimp.ImportGraph:
    graph = grimp.ImportGraph()
    graph.add_module("pkg")
    for importer, imported in imports:
        for module in (importer, imported):
            graph.add_module(module)
        graph.add_import(importer=importer, imported=imported)
    return graph


def contract(*packages: str) -> AcyclicModules:
    return AcyclicModules(
        name="no cycles", session_options={}, contract_options={"packages": list(packages)}
    )


class TestImportCycles:
    def test_a_chain_has_none(self) -> None:
        assert import_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []

    def test_two_modules_importing_each_other(self) -> None:
        assert import_cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]

    def test_a_module_importing_itself(self) -> None:
        assert import_cycles({"a": {"a"}, "b": {"a"}}) == [["a"]]

    def test_one_list_per_cycle_with_every_module_of_it(self) -> None:
        imports = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d", "a"}}
        assert import_cycles(imports) == [["a", "b", "c"], ["d", "e"]]

    def test_a_long_cycle_needs_no_recursion(self) -> None:
        modules = [f"m{i:05d}" for i in range(5000)]
        imports = {m: {modules[(i + 1) % len(modules)]} for i, m in enumerate(modules)}
        assert import_cycles(imports) == [modules]


class TestAcyclicModules:
    def test_kept_when_siblings_import_across_packages_without_a_cycle(self) -> None:
        # The case acyclic_siblings refuses: package x imports y and y imports x, though no
        # module imports back.
        graph = graph_of(("pkg.x.service", "pkg.y.models"), ("pkg.y.service", "pkg.x.service"))
        assert contract("pkg").check(graph, verbose=False).kept

    def test_broken_by_a_cycle_across_packages_with_its_imports(self) -> None:
        graph = graph_of(
            ("pkg.users.service", "pkg.sessions.service"),
            ("pkg.sessions.service", "pkg.users.service"),
            ("pkg.users.service", "pkg.users.models"),
        )
        check = contract("pkg").check(graph, verbose=False)
        assert not check.kept
        assert check.metadata["cycles"] == [
            [
                ("pkg.sessions.service", "pkg.users.service"),
                ("pkg.users.service", "pkg.sessions.service"),
            ]
        ]

    def test_a_cycle_outside_the_packages_is_not_its_business(self) -> None:
        graph = graph_of(("other.a", "other.b"), ("other.b", "other.a"), ("pkg.a", "other.a"))
        assert contract("pkg").check(graph, verbose=False).kept
