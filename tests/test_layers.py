"""The packages import downward only: no package imports one that imports it back,
lazily (inside a function) or not, and under `TYPE_CHECKING` too.

The graph is read from the sources, not from what happens to be imported at run time,
so an import hidden in a function counts. Expected picture (README, Map of the code):
dataflows -> sql -> operators / sources / sinks -> ownership -> storage -> monitoring, and
config / kafka_client -> the leaf modules `setting` and `process`.
"""

from __future__ import annotations

import ast
import itertools
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _units() -> dict[str, list[Path]]:
    """Each top-level package or module of the repo (not the tests) and its files."""
    units: dict[str, list[Path]] = {}
    for path in sorted(ROOT.iterdir()):
        if path.is_dir() and (path / "__init__.py").exists() and path.name != "tests":
            units[path.name] = sorted(path.rglob("*.py"))
        elif path.suffix == ".py":
            units[path.stem] = [path]
    return units


def import_graph() -> dict[str, dict[str, str]]:
    """unit -> {unit it imports: the first file that does}."""
    units = _units()
    graph: dict[str, dict[str, str]] = defaultdict(dict)
    for unit, files in units.items():
        for file in files:
            for node in ast.walk(ast.parse(file.read_text(), str(file))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in units and top != unit:
                        graph[unit].setdefault(top, str(file.relative_to(ROOT)))
    return graph


def circles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """Every import circle, as the path that closes it (`a -> b -> a`), once each."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def walk(path: list[str]) -> None:
        for nxt in graph.get(path[-1], {}):
            if nxt == path[0]:
                if frozenset(path) not in seen:
                    seen.add(frozenset(path))
                    found.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:  # each circle from its least unit
                walk([*path, nxt])

    for unit in sorted(graph):
        walk([unit])
    return found


def test_no_package_imports_one_that_imports_it_back():
    graph = import_graph()
    found = circles(graph)
    described = [
        " -> ".join(c) + " (" + ", ".join(graph[a][b] for a, b in itertools.pairwise(c)) + ")"
        for c in found
    ]
    assert not found, "import circles:\n" + "\n".join(described)


def test_the_layers_named_in_the_issue_point_down():
    graph = import_graph()
    assert "ownership" in graph["sinks"] and "storage" in graph["ownership"]
    assert "setting" in graph["config"] and "setting" in graph["kafka_client"]
    for leaf in ("setting", "process"):
        assert set(graph.get(leaf, {})) <= {"setting"}, f"{leaf} imports {graph[leaf]}"


def test_a_circle_is_found():
    # the check itself can fail: a graph with the circle sinks had with ownership
    graph = {"sinks": {"ownership": "a"}, "ownership": {"sinks": "b", "storage": "c"}}
    assert circles(graph) == [["ownership", "sinks", "ownership"]]
