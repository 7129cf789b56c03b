"""No import cycles between packages: shared types live in the package both sides import.

The graph is read from the source (every `import`, at module level or inside a function), with one node per
package of the repository: `lakepulse.<sub>` for lakepulse's subpackages and modules, `streaming`,
`spark_jobs` and `dags`.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("lakepulse", "streaming", "spark_jobs", "dags")


def package_of(module: str) -> str | None:
    """The graph node of a dotted module name, or None for modules outside the repository."""
    parts = module.split(".")
    if parts[0] not in ROOTS:
        return None
    if parts[0] == "lakepulse" and len(parts) > 1:
        return f"lakepulse.{parts[1]}"
    return parts[0]


def module_name(path: Path) -> str:
    relative = path.relative_to(REPO).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of what a file imports (relative imports resolved against its package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join([*base, *([node.module] if node.module else [])]))
            elif node.module:
                names.add(node.module)
    return names


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for root in ROOTS:
        for path in (REPO / root).rglob("*.py"):
            source = package_of(module_name(path))
            if source is None:
                continue
            for name in imported_modules(path):
                target = package_of(name)
                if target is not None and target != source and target != "lakepulse":
                    graph[source].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One path per cycle found by depth-first search (enough to name each offending pair)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


# Packages still importing each other when this test was written (2026-12-01): the batch layer's jobs, its
# Airflow client and the platform that provisions and starts them (mostly imports inside functions). It may
# shrink, never grow: a package that joins it, or a new tangle elsewhere, fails the test.
KNOWN_TANGLE = frozenset(
    {"lakepulse.batch", "lakepulse.platform", "lakepulse.spark_session", "spark_jobs", "streaming"})


def tangles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The groups of packages that import each other (strongly connected components of more than one)."""
    nodes = set(graph) | {n for targets in graph.values() for n in targets}
    reach = {node: _reachable(graph, node) for node in nodes}
    groups: list[set[str]] = []
    for node in sorted(nodes):
        group = {other for other in nodes if other in reach[node] and node in reach[other]}
        if len(group) > 1 and group not in groups:
            groups.append(group)
    return groups


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_tangle_finder_groups_mutual_imports() -> None:
    assert tangles({"a": {"b"}, "b": {"a", "c"}, "c": set(), "d": {"e"}, "e": {"d"}}) == [{"a", "b"}, {"d", "e"}]


def test_no_import_cycles_between_packages() -> None:
    graph = package_graph()
    assert graph["lakepulse.api"], "the graph reads no imports: the test would pass whatever the code"
    new = [group for group in tangles(graph) if not group <= KNOWN_TANGLE]
    assert new == [], [" -> ".join(c) for c in cycles(graph)]
