"""The import graph of python/star: no cycles, no import from a lower layer to a higher one, every module imports.

The graph is read from the source (``ast``), lazy imports inside functions included: a
cycle through a function-level import is still two modules that need each other. Two
kinds of edge are left out: a module importing its own parent package (``from . import
x``: the package is being imported already), and imports of the root ``star`` package,
which is a facade (``__version__`` and lazy wrappers) that only ``__version__`` may be
taken from.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import star

ROOT = Path(star.__file__).resolve().parent

# Layer of each subpackage / top-level module: imports go to the same or a lower layer.
LAYERS = {
    "_version": 0,
    "errors": 0,
    "fileio": 0,
    "progress": 0,
    "config_tree": 0,
    "output_paths": 0,
    "dotted_keys": 0,
    "console": 0,
    "data": 1,
    "models": 2,
    "losses": 2,
    "pose": 2,
    "metrics": 3,
    "config": 4,
    "reports": 5,
    "engine": 6,
    "export": 7,
    "explain": 7,
    "cli": 8,
    "demo": 8,
}


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return mods


MODULES = _modules()


def _targets(module: str, is_pkg: bool, node: ast.AST) -> list[tuple[str, list[str]]]:
    """(imported star module, names taken from it) of one import statement."""
    if isinstance(node, ast.Import):
        return [(a.name, []) for a in node.names if a.name in MODULES]
    base = module.split(".")[: None if is_pkg else -1]
    if node.level:
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    subs = [(f"{prefix}.{a.name}", []) for a in node.names if f"{prefix}.{a.name}" in MODULES]
    if subs:
        return subs
    return [(prefix, [a.name for a in node.names])] if prefix in MODULES else []


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """(module -> star modules it imports, problems with imports of the root package)."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    root_misuse = []
    for module, (path, is_pkg) in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target, names in _targets(module, is_pkg, node):
                if target == "star":
                    if module != "star" and names != ["__version__"]:
                        root_misuse.append(f"{module} imports {names or 'star'} from the root package")
                elif target != module and not module.startswith(target + "."):
                    edges[module].add(target)
    return edges, root_misuse


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else max(LAYERS.values()) + 1


def test_the_checker_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    edges, root_misuse = import_graph()
    assert "star.reports.rank_lists" in edges and edges["star.reports.rank_lists"]  # the graph was read
    assert find_cycles(edges) == []
    assert root_misuse == []


def test_every_subpackage_has_a_layer_and_imports_go_down():
    edges, _ = import_graph()
    assert {m.split(".")[1] for m in MODULES if m != "star"} <= set(LAYERS)
    upward = [f"{a} -> {b}" for a, targets in edges.items() for b in targets if _layer(b) > _layer(a)]
    assert upward == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module):
    importlib.import_module(module)


def test_the_version_in_pyproject_is_the_package_version():
    # pyproject.toml's static version is read by pip without importing star; the two must agree.
    import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    assert tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"] == star.__version__
