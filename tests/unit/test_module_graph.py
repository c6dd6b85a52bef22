"""The import graph between medforge's own modules, read with ``ast`` (nothing is imported).

* No circle between files (imports inside functions and under ``TYPE_CHECKING`` count: an
  import hidden in a function still ties the two files together).
* No medforge-internal import inside a function in the files listed in ``CHECKED``: imports
  inside functions are for heavy optional dependencies (ray, vllm, torch, ...), never to hide a
  circle. ``LAZY`` names the few internal ones that stand for such a dependency, with the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PKG = SRC / "medforge"

# Files whose in-function imports are not checked (none: every medforge module is).
NOT_CHECKED: tuple[str, ...] = ()

# (file, imported module) -> why the import stays inside the function
LAZY = {
    ("generate/novelty.py", "medforge.generate._novelty_kernels"):
        "numba: imported (and its kernels compiled) only when the filter first runs",
}

# Circles that are known and being removed; none is left, so every circle fails the test.
KNOWN_CIRCLES: set[frozenset[str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _owner(name: str) -> str | None:
    """The medforge module a dotted name lives in (``medforge.io.read_jsonl`` -> ``medforge.io``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path) -> list[tuple[str, bool, int]]:
    """``(medforge module, inside a function, line)`` for every medforge import of one file."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(anchor + ([child.module] if child.module else []))
                # "from medforge.x import y" may import the module medforge.x.y
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in child.names]
            for target in targets:
                owner = _owner(target) if target.startswith("medforge") else None
                if owner and owner != module:
                    found.append((owner, in_function, child.lineno))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text()), False)
    return found


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _circles() -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    edges = {m: sorted({t for t, _, _ in imps}) for m, imps in GRAPH.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(frozenset(component))

    for v in edges:
        if v not in index:
            connect(v)
    return out


def _checked(path: Path) -> bool:
    rel = path.relative_to(PKG).as_posix()
    return not any(rel == n or (n.endswith("/") and rel.startswith(n)) for n in NOT_CHECKED)


def test_the_graph_is_read():
    """The reader sees imports, inside functions too (else the tests below would pass on anything)."""
    assert len(MODULES) > 50
    assert ("medforge.io", False) in {(t, f) for t, f, _ in GRAPH["medforge.cards.render"]}
    assert ("medforge.generate._novelty_kernels", True) in {(t, f) for t, f, _ in GRAPH["medforge.generate.novelty"]}


def test_no_new_circle_between_modules():
    circles = _circles()
    unknown = [sorted(c) for c in circles if c not in KNOWN_CIRCLES]
    assert unknown == [], f"import circles between medforge modules: {unknown}"


def test_no_medforge_import_inside_a_function():
    offenders = set()
    for name, path in MODULES.items():
        if not _checked(path):
            continue
        rel = path.relative_to(PKG).as_posix()
        for target, in_function, line in GRAPH[name]:
            if in_function and (rel, target) not in LAZY:
                offenders.add(f"src/medforge/{rel}:{line}: imports {target} inside a function")
    assert not offenders, "move these imports to the top of the file:\n" + "\n".join(sorted(offenders))


def test_the_lazy_exceptions_still_exist():
    """An exception whose import has gone (or moved to the top) is dropped from LAZY, not left to excuse a new one."""
    for rel, target in LAZY:
        assert (target, True) in {(t, f) for t, f, _ in GRAPH[_module_name(PKG / rel)]}, (rel, target)
