"""No import cycles inside the package, imports inside functions included.

A cycle closed by an import inside a function works at run time, but it ties two modules
together: neither can be read, tested or moved without the other (docs/architecture.md,
"Layers"). The layer test (test_layers.py) keeps the order between layers; this one keeps every
module's imports a directed graph without cycles, inside a layer too. It reads the same imports
(``test_layers.imports_of``: every import statement, at any depth).
"""
from __future__ import annotations

from .test_layers import PACKAGE, SOURCES, imports_of, module_name


def import_graph() -> dict[str, set[str]]:
    """module -> the medpeft modules it imports (a package name stands for its __init__)."""
    modules = {module_name(path): path for path in SOURCES}
    graph = {name: {target for target, _ in imports_of(path)} - {name} for name, path in modules.items()}
    unknown = {target for targets in graph.values() for target in targets} - set(modules)
    assert not unknown, f"the import reader named no module of the tree: {sorted(unknown)}"  # an edge lost
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_module_imports_itself_back():
    found = cycles(import_graph())
    assert not found, "import cycles (each group imports itself back, possibly inside functions): " + "; ".join(
        " <-> ".join(group) for group in found)


def test_the_cycle_finder_finds_cycles():
    """Positive controls: a two-module cycle, a three-module ring, and a chain that is no cycle."""
    assert cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_holds_imports_inside_functions():
    graph = import_graph()
    assert "medpeft.train" in graph["medpeft.cli.finetune"]  # imported inside cmd_finetune
    assert "medpeft.data.decode" in graph["medpeft.data.base"]
    assert len(graph) == len(SOURCES) and all(name.startswith("medpeft") for name in graph)
    assert (PACKAGE / "data" / "errors.py") in SOURCES
