"""The house rules a reader relies on, checked from the source text:

  - imports run one way: cli -> api/client/cluster -> engine -> ingest -> store ->
    psf -> the leaves (results, wire, files) -> _native -> config -> errors
    -> sizes; no module imports a layer above its own (lazy imports inside
    functions count too) and no import circle exists, even within a layer;
  - no module is longer than ~500 lines unless its docstring says why.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "shoal"

# Higher imports lower, never the reverse; equal ranks only within one package.
RANKS = {
    "shoal.sizes": 0, "shoal._version": 0,
    "shoal.errors": 1,
    "shoal.config": 2,
    "shoal._native": 3,
    "shoal.files": 4, "shoal.wire": 4,
    "shoal.results": 5,
    "shoal.psf": 6,
    "shoal.store": 7,
    "shoal.ingest": 8,
    "shoal.engine": 9,
    "shoal.sample": 10, "shoal.client": 10, "shoal.api": 10, "shoal.cluster": 10,
    "shoal.cli": 11,
    "shoal": 12,
}
MAX_LINES = 500


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: pathlib.Path, modules: dict) -> set[str]:
    """The shoal modules `name` imports (a name imported from a package is
    the submodule when there is one)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("shoal"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("shoal"))
    found.discard(name)
    return found


def _rank(module: str) -> tuple[int, str]:
    """(rank, layer) of a module: its longest prefix in RANKS."""
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        prefix = ".".join(parts[:k])
        if prefix in RANKS:
            return RANKS[prefix], prefix
    raise AssertionError(f"{module} belongs to no layer: add it to RANKS in {__file__}")


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_every_module_has_a_layer():
    for module in _modules():
        _rank(module)


def test_imports_run_one_way():
    upward = []
    for module, targets in _graph().items():
        rank, layer = _rank(module)
        for target in targets:
            t_rank, t_layer = _rank(target)
            if t_layer != layer and t_rank >= rank:
                upward.append(f"{module} ({layer}) imports {target} ({t_layer})")
    assert not upward, "imports against the layer order:\n" + "\n".join(sorted(upward))


def test_no_import_circle():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
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
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_checks_catch_what_they_look_for(tmp_path, monkeypatch):
    """The graph reader sees relative, absolute and lazy imports."""
    pkg = tmp_path / "shoal"
    (pkg / "store").mkdir(parents=True)
    (pkg / "engine").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "store" / "__init__.py").write_text("")
    (pkg / "engine" / "__init__.py").write_text("")
    (pkg / "store" / "log.py").write_text("def f():\n    from ..engine import planner\n")
    (pkg / "engine" / "planner.py").write_text("import shoal.store.log\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", pkg)
    graph = _graph()
    assert graph["shoal.store.log"] == {"shoal.engine.planner"}
    assert graph["shoal.engine.planner"] == {"shoal.store.log"}
    with pytest.raises(AssertionError, match="store.log .shoal.store. imports shoal.engine.planner"):
        test_imports_run_one_way()
    with pytest.raises(AssertionError, match="import circles"):
        test_no_import_circle()


def _long_without_reason() -> list[str]:
    out = []
    for path in sorted(ROOT.rglob("*")):
        if path.suffix not in (".py", ".c", ".h") or "__pycache__" in path.parts:
            continue
        text = path.read_text()
        n = text.count("\n")
        if n <= MAX_LINES:
            continue
        if path.suffix == ".py":
            doc = ast.get_docstring(ast.parse(text)) or ""
        else:
            doc = text[:text.find("*/")] if text.lstrip().startswith("/*") else ""
        if "Why this file is long:" not in doc:
            out.append(f"{path.relative_to(ROOT.parent)}: {n} lines")
    return out


def test_long_modules_say_why():
    long = _long_without_reason()
    assert not long, (f"over {MAX_LINES} lines with no 'Why this file is long:' in the opening "
                      f"docstring or comment (split the file, or say why it is one piece):\n" + "\n".join(long))
