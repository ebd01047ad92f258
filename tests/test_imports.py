"""The package's modules import one another without a cycle, and each imports on its own.

Every import counts: at module level, under ``if TYPE_CHECKING:`` and inside
functions. A lazy or typing-only import that closes a cycle still ties the
modules together (one cannot be read, tested or moved without the other), so
it fails here like a module-level one.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import autopyfactory

PACKAGE = Path(autopyfactory.__file__).parent


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imported(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules ``module`` imports anywhere in its text."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            # ``from pkg import sub`` imports the module pkg.sub when there is one
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known and name != module}


def import_graph() -> dict[str, set[str]]:
    known = module_names()
    return {module: imported(module, path, known) for module, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules (Tarjan), as a path a -> ... -> a."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [path_through(graph, group) for group in groups]


def path_through(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest cycle inside ``group``, for a readable failure message."""
    best: list[str] = []
    for start in sorted(group):
        paths = {start: [start]}
        frontier = [start]
        while frontier:
            following = []
            for node in frontier:
                for target in sorted(graph[node] & group):
                    if target == start:
                        cycle = paths[node] + [start]
                        if not best or len(cycle) < len(best):
                            best = cycle
                    elif target not in paths:
                        paths[target] = paths[node] + [target]
                        following.append(target)
            frontier = following
    return best


def test_the_graph_sees_every_kind_of_import(tmp_path):
    graph = import_graph()
    # module level, ``from pkg import module``, typing-only and function-local imports all count
    assert "autopyfactory.config" in graph["autopyfactory.factory"]
    assert "autopyfactory.commands" in graph["autopyfactory.plugins.batchstatus.slurm"]
    assert "autopyfactory.queue" in graph["autopyfactory.view"]  # under TYPE_CHECKING only
    lazy = tmp_path / "lazy.py"  # the package has no function-local import left to show it on
    lazy.write_text("def later():\n    from autopyfactory.plugins import registry\n")
    assert "autopyfactory.plugins.registry" in imported("lazy", lazy, module_names())


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = import_graph()
    found = [" -> ".join(cycle) for cycle in cycles(graph)]
    assert not found, "import cycles (one shown per group of modules tied together):\n" + "\n".join(found)


@pytest.mark.parametrize("module", sorted(module_names()))
def test_every_module_imports_first(module):
    """Imported first in a fresh interpreter (whatever the order), each module loads."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
