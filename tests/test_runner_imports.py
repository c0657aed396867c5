"""The runner's modules import one way: no module reaches, directly or through others, back to
one that imports it (cli, compare, loop, plots, report and saved once formed a cycle).

Imports inside functions count too: they are cycles that only wait for the call.
"""
import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

RUNNER = Path(__file__).resolve().parents[1] / "gbml_ext" / "runner"
PACKAGE = "gbml_ext.runner"


def runner_imports(path: Path, modules: Set[str]) -> Set[str]:
    """The runner modules that the module at `path` imports, anywhere in its body."""
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import y / from . import x
                base = node.module or ""
            elif node.level == 0 and (node.module or "").startswith(PACKAGE + "."):
                base = node.module[len(PACKAGE) + 1:]
            elif node.level == 0 and node.module == PACKAGE:
                base = ""
            else:
                continue
            top = base.split(".")[0]
            if top:
                found.add(top)
            else:  # from . import a, b: a module each, or the package itself
                found |= {alias.name for alias in node.names if alias.name in modules} or {
                    "__init__"}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + "."):
                    found.add(alias.name[len(PACKAGE) + 1:].split(".")[0])
    return found & (modules | {"__init__"})


def import_graph() -> Dict[str, Set[str]]:
    modules = {p.stem for p in RUNNER.glob("*.py")}
    return {p.stem: runner_imports(p, modules) - {p.stem} for p in RUNNER.glob("*.py")}


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import cycle of `graph` as [a, b, ..., a], or [] if it is acyclic."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_the_runner_imports_form_no_cycle():
    graph = import_graph()
    assert {"cli", "compare", "loop", "options", "plots", "report", "saved",
            "summaries"} <= set(graph)
    assert find_cycle(graph) == []


@pytest.mark.parametrize("module,below", [
    ("summaries", set()),                      # data at the bottom: imports nothing of the runner
    ("plots", {"rundir", "summaries"}),        # figures take data
    ("report", {"summaries"}),                 # tables take data
])
def test_summaries_plots_and_reports_sit_low(module, below):
    assert import_graph()[module] <= below


def test_nothing_imports_the_command_lines_but_the_entry_points():
    front_ends = {"cli", "compare"}
    importers = {name for name, targets in import_graph().items() if targets & front_ends}
    assert importers <= {"__main__"}, importers
    # and both front ends take their grammar from the one module below them
    graph = import_graph()
    assert "options" in graph["cli"] and "options" in graph["compare"]
    assert not graph["options"] & front_ends


def documented_layers() -> List[List[str]]:
    """The rows of the layers block of docs/design.md, top to bottom."""
    text = (RUNNER.parents[1] / "docs" / "design.md").read_text()
    block = text.split("## The runner's layers", 1)[1].split("```")[1]
    return [line.split(":", 1)[1].split() for line in block.strip().splitlines()]


def test_design_md_layers_hold():
    """Each module imports only from rows below its own, or from its left in its row."""
    rows = documented_layers()
    graph = import_graph()
    assert sorted(m for row in rows for m in row) == sorted(graph)  # every module, once
    rank = {m: (i, j) for i, row in enumerate(rows) for j, m in enumerate(row)}
    for module, targets in graph.items():
        for target in targets:
            (row, col), (t_row, t_col) = rank[module], rank[target]
            assert t_row > row or (t_row == row and t_col < col), (
                f"{module} imports {target}, which docs/design.md puts above it")
