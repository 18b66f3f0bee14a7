"""raycompat's modules import one way: no cycle among their top-level imports, and an
import of a raycompat module inside a function says why it must load late (``# late:``
on its line, or on the line before it or before the group of imports it starts)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "raycompat"


def _modules() -> dict:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _targets(node, module: str, path: Path, mods: dict) -> list:
    """The raycompat modules an import statement loads (a package's submodule, not the
    package, when it names submodules: ``from raycompat import exceptions``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in mods]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
    subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
    found = subs if len(subs) == len(node.names) else [base, *subs]
    return [t for t in found if t in mods and t != module]


def _graph():
    mods = _modules()
    edges = {m: set() for m in mods}
    late = []  # (module, line number, source lines)
    for module, path in mods.items():
        source = path.read_text()
        tree = ast.parse(source)
        top_level = set()
        for stmt in tree.body:  # module level, including under ``if``/``try``
            top_level.update(ast.walk(stmt) if isinstance(stmt, (ast.If, ast.Try)) else [stmt])
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets = _targets(node, module, path, mods)
            if not targets:
                continue
            if node in top_level:
                edges[module].update(targets)
            else:
                late.append((module, node.lineno, source.splitlines()))
    return edges, late


def _cycles(edges: dict) -> list:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    edges, _ = _graph()
    assert len(edges) > 30  # the walk found the package
    assert _cycles(edges) == []


def test_every_late_import_says_why():
    _, late = _graph()
    unexplained = []
    for module, lineno, lines in late:
        i = lineno - 1
        # walk up over the imports of the same group and their comments
        while i >= 0 and "# late:" not in lines[i]:
            above = lines[i - 1].strip() if i > 0 else ""
            if not (above.startswith(("from ", "import ", "#"))):
                break
            i -= 1
        if i < 0 or "# late:" not in lines[i]:
            unexplained.append(f"{module}:{lineno}: {lines[lineno - 1].strip()}")
    assert not unexplained, "function-level imports without a '# late:' reason:\n" + "\n".join(unexplained)


def test_the_check_sees_cycles_and_late_imports():
    """The two checks above are not vacuous: a cycle and an unexplained late import are
    found where they exist."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    _, late = _graph()
    assert late  # raycompat has late imports (each with its reason)
