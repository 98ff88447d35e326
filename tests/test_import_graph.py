"""The layer rules of docs/ARCHITECTURE.md, checked on the source: every import (module level and inside
functions) points down a layer, and no module reaches itself through imports (no circle).

The graph is read with ``ast`` (nothing is imported): an edge goes from a module to the most specific project
module an import statement names (``from experiments.engine import jobs`` -> ``experiments.engine.jobs``;
``from agents.config import X`` -> ``agents.config``). A package's ``__init__`` counts as the package's module.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Lower number = lower layer; a module may import its own layer's modules and those of lower layers only.
LAYERS = {"lab": 0, "envs": 1, "supervised": 2, "agents": 2, "experiments": 3, "benchmarks": 4}
# Within a layer, packages that must not import each other (ARCHITECTURE.md: "never each other").
SIBLINGS_APART = {("supervised", "agents"), ("agents", "supervised")}
# Inside experiments (docs/ARCHITECTURE.md): the engine runs any jobs and knows no experiment (0); job functions
# know no experiment (1); the shared modules (spec, summary rows, results files, plots, report parts) know none (2);
# each experiment package, its plan and its analysis (3); what lists and runs them all (4).
EXPERIMENTS_LAYERS = {"engine": 0, "runs": 1, "registry": 4, "pipeline": 4, "cli": 4, "__main__": 4, "": 4}
EXPERIMENT_PACKAGE = 3  # any other package under experiments/ (digits, imitation, ...)
SHARED = 2  # any other module directly under experiments/


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in LAYERS for p in sorted((ROOT / package).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> dict[str, int]:
    """Project modules that ``name`` imports (anywhere in the file), with the line of the first import."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        while target and target not in known:  # `from a.b import c` where c is not a module: a.b
            target = target.rpartition(".")[0]
        if target and target != name:
            found.setdefault(target, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                add(candidate if candidate in known else source, node.lineno)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    modules = project_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def layer(module: str) -> tuple[int, int]:
    top, _, rest = module.partition(".")
    if top != "experiments":
        return LAYERS[top], 0
    first = rest.partition(".")[0]
    if first in EXPERIMENTS_LAYERS:
        return LAYERS[top], EXPERIMENTS_LAYERS[first]
    return LAYERS[top], EXPERIMENT_PACKAGE if (ROOT / top / first).is_dir() else SHARED


def upward_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    problems = []
    for module, targets in graph.items():
        for target, line in targets.items():
            pair = (module.partition(".")[0], target.partition(".")[0])
            if layer(target) > layer(module) or pair in SIBLINGS_APART:
                problems.append(f"{module}:{line} imports {target}, a layer above it or a sibling kept apart")
    return problems


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_in_function_and_relative_imports(tmp_path):
    """The reader itself: an import inside a function and a relative import are edges too."""
    package = tmp_path / "experiments"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from experiments.b import g\n    return g\n")
    (package / "b.py").write_text("from . import a\n")
    known = {"experiments", "experiments.a", "experiments.b"}
    assert imports_of("experiments.a", package / "a.py", known) == {"experiments.b": 2}
    assert imports_of("experiments.b", package / "b.py", known) == {"experiments.a": 1}
    assert circles({"experiments.a": {"experiments.b": 2}, "experiments.b": {"experiments.a": 1}}) == [
        ["experiments.a", "experiments.b"]]


def test_no_import_points_up_a_layer():
    problems = upward_imports(import_graph())
    assert not problems, "imports against docs/ARCHITECTURE.md's layers:\n" + "\n".join(problems)


def test_no_import_circles():
    found = circles(import_graph())
    assert not found, "import circles (module-level or in-function imports):\n" + "\n".join(
        " <-> ".join(c) for c in found)


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_every_package_is_read(package):
    """A package that moved or was renamed must not drop out of the check unnoticed."""
    assert any(m == package or m.startswith(package + ".") for m in project_modules())
