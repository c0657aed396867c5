"""gbml_ext imports one way, at two levels, as docs/design.md draws them: its packages (the
compare command above the launchers, above the runner, above the library) and the runner's
modules. No module reaches, directly or through others, back to one that imports it (the
runner and the launchers once imported each other; cli, compare, loop, plots, report and saved
once formed a cycle).

Imports inside functions count too: they are cycles that only wait for the call.
"""
import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gbml_ext"
RUNNER = PACKAGE / "runner"
DESIGN = ROOT / "docs" / "design.md"


def is_module(parts: List[str]) -> bool:
    """Whether ["gbml_ext", ...] names a module or package on disk."""
    path = ROOT.joinpath(*parts)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(path: Path) -> Set[str]:
    """The gbml_ext modules the file at `path` imports anywhere in its body, dotted
    ("gbml_ext.runner.loop"); `from X import a, b` counts X.a and X.b where they are modules,
    else X."""
    package = ["gbml_ext", *path.relative_to(PACKAGE).parent.parts]  # what `from .` means
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = base + (node.module.split(".") if node.module else [])
            if module[:1] != ["gbml_ext"]:
                continue
            submodules = {".".join(module + [alias.name]) for alias in node.names
                          if is_module(module + [alias.name])}
            found |= submodules or {".".join(module)}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("gbml_ext")}
    return found


def unit_of(module: str, prefix: str, units: Set[str]) -> Optional[str]:
    """The unit (a package or module directly under `prefix`) that `module` names, "__init__"
    for `prefix` itself, or None when it is outside `prefix` or names no unit."""
    if module == prefix:
        return "__init__"
    if not module.startswith(prefix + "."):
        return None
    top = module[len(prefix) + 1:].split(".")[0]
    return top if top in units else None


def import_graph(folder: Path, prefix: str) -> Dict[str, Set[str]]:
    """{unit: the units it imports} for the modules and subpackages directly in `folder`; a
    package's files all count as its own."""
    units = {p.stem for p in folder.glob("*.py")} | {
        p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
    graph: Dict[str, Set[str]] = {unit: set() for unit in units}
    for path in folder.rglob("*.py"):
        unit = path.relative_to(folder).parts[0].removesuffix(".py")
        for module in imported_modules(path):
            target = unit_of(module, prefix, units)
            if target is not None and target != unit:
                graph[unit].add(target)
    return graph


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


def documented_layers(heading: str) -> List[List[str]]:
    """The rows of the first code block under `heading` in docs/design.md, top to bottom."""
    block = DESIGN.read_text().split(heading + "\n", 1)[1].split("```")[1]
    return [line.split(":", 1)[1].split() for line in block.strip().splitlines()]


def layer_violations(graph: Dict[str, Set[str]], rows: List[List[str]]) -> List[str]:
    """Each import of a unit from a row above its own, or from its right in its row."""
    rank = {m: (i, j) for i, row in enumerate(rows) for j, m in enumerate(row)}
    return [f"{unit} imports {target}, which docs/design.md puts above it"
            for unit, targets in sorted(graph.items()) for target in sorted(targets)
            if not (rank[target][0] > rank[unit][0]
                    or (rank[target][0] == rank[unit][0] and rank[target][1] < rank[unit][1]))]


LEVELS = {"packages": (PACKAGE, "gbml_ext", "## The packages' layers"),
          "runner": (RUNNER, "gbml_ext.runner", "## The runner's layers")}


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_an_upward_import_is_a_violation():
    rows = [["top"], ["middle"], ["left", "right"]]
    assert layer_violations({"top": {"middle", "right"}, "right": {"left"}}, rows) == []
    assert layer_violations({"middle": {"top"}, "left": {"right"}}, rows) == [
        "left imports right, which docs/design.md puts above it",
        "middle imports top, which docs/design.md puts above it"]


def test_imports_are_read_at_any_depth_and_relative_level():
    graph = import_graph(PACKAGE, "gbml_ext")
    assert {"runner", "fileio", "registry"} <= graph["launch"]   # from ..runner.x, ..fileio
    assert {"launch", "runner"} <= graph["compare"]
    assert {"algorithms", "_startup"} <= graph["__init__"]       # from . import _startup
    assert {"loop", "options"} <= import_graph(RUNNER, "gbml_ext.runner")["cli"]


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_every_unit_is_drawn_once_and_imports_only_below_it(level):
    folder, prefix, heading = LEVELS[level]
    graph = import_graph(folder, prefix)
    rows = documented_layers(heading)
    assert sorted(m for row in rows for m in row) == sorted(graph)  # every unit, once
    assert layer_violations(graph, rows) == []
    assert find_cycle(graph) == []


def test_the_runner_knows_neither_the_launchers_nor_the_compare_command():
    assert not import_graph(PACKAGE, "gbml_ext")["runner"] & {"launch", "compare"}
    assert "compare" not in import_graph(PACKAGE, "gbml_ext")["launch"]


@pytest.mark.parametrize("module,below", [
    ("summaries", set()),                      # data at the bottom: imports nothing of the runner
    ("plots", {"rundir", "summaries"}),        # figures take data
    ("report", {"summaries"}),                 # tables take data
])
def test_summaries_plots_and_reports_sit_low(module, below):
    assert import_graph(RUNNER, "gbml_ext.runner")[module] <= below


def test_nothing_imports_the_command_lines_but_the_entry_points():
    graph = import_graph(RUNNER, "gbml_ext.runner")
    importers = {name for name, targets in graph.items() if "cli" in targets}
    assert importers <= {"__main__"}, importers
    assert "options" in graph["cli"] and "cli" not in graph["options"]


EXPERIMENTS = ROOT / "experiments"


def defined_names(path: Path) -> Set[str]:
    """The names a module's own top level defines (not those it imports)."""
    names: Set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def test_experiments_take_each_shared_name_from_where_it_is_defined_and_form_no_cycle():
    """A study and its report share their layout through a third module (no cycle), by public
    names, and every helper comes from the module that defines it, not from one that happens to
    import it (`pooled_summary` is `runner.summaries`', not gbml-compare's)."""
    graph: Dict[str, Set[str]] = {}
    problems = []
    for path in sorted(EXPERIMENTS.glob("*.py")):
        graph[path.stem] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                continue
            parts = node.module.split(".")
            if parts[0] == "experiments":  # from experiments.x import y, from experiments import x
                graph[path.stem] |= {parts[1]} if len(parts) > 1 else {
                    alias.name for alias in node.names}
            source = ROOT.joinpath(*parts).with_suffix(".py")
            if parts[0] not in ("experiments", "gbml_ext") or not source.is_file():
                continue  # a package's __init__ re-exports its public names on purpose
            for alias in node.names:
                if alias.name.startswith("_") or alias.name not in defined_names(source):
                    problems.append(f"{path.name}: {alias.name} from {node.module}")
    assert problems == []
    assert find_cycle(graph) == []
