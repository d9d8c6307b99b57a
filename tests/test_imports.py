"""No import cycle among the modules of ``gaussconv_plugin/`` and ``tools/`` (read with ``ast``; nothing is imported).

Every ``import`` / ``from … import`` statement counts as an edge, wherever it stands: at module level, inside a
function, under ``try``/``if``. Relative imports are resolved against the importing module's package. ``from P
import x`` is an edge to ``P.x`` when that is a module of the set, else to ``P``. Only edges between modules of
the set are kept. The parent packages that Python runs on the way to a submodule (``import a.b.c`` also runs
``a/__init__.py`` and ``a/b/__init__.py``) are not edges: with them every submodule would form a cycle with the
``__init__`` of its package, which is how packages work and is not a circle between concerns.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("gaussconv_plugin", "tools")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Dotted name → file, for every ``.py`` under the roots (``tools`` is a namespace package)."""
    out = {}
    for root in ROOTS:
        for p in sorted((REPO / root).rglob("*.py")):
            if "__pycache__" not in p.parts:
                out[_module_name(p)] = p
    return out


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def import_edges(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """``(imported module, line)`` for each import statement of ``path`` that names a module in ``known``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    pkg = _package_of(name, path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name in known]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            for a in node.names:
                sub = f"{src}.{a.name}"
                if sub in known:
                    out.append((sub, node.lineno))
                elif src in known:
                    out.append((src, node.lineno))
    return out


def import_graph() -> dict[str, dict[str, int]]:
    """Module → {imported module: first line of such an import}."""
    mods = modules()
    known = set(mods)
    graph: dict[str, dict[str, int]] = {}
    for name, path in mods.items():
        edges: dict[str, int] = {}
        for dst, line in import_edges(name, path, known):
            if dst != name:
                edges.setdefault(dst, line)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted; sorted by first name."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _describe(comp: list[str], graph: dict[str, dict[str, int]]) -> str:
    inside = set(comp)
    edges = [f"{a} → {b} ({modules()[a].relative_to(REPO)}:{line})"
             for a in comp for b, line in sorted(graph[a].items()) if b in inside]
    return "; ".join(edges)


# ------------------------------------------------------------------------------------------------ the walker
def test_walker_resolves_relative_function_level_and_from_imports(tmp_path, monkeypatch):
    """The walker on a made-up package: a relative function-level import closes a cycle, a sibling does not."""
    pkg = tmp_path / "gaussconv_plugin"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("import os\nfrom . import b\n\ndef f():\n    return b\n")
    (pkg / "b.py").write_text("def g():\n    from .sub.c import h\n    return h\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("def h():\n    from ..a import f\n    return f\n")
    (pkg / "d.py").write_text("import gaussconv_plugin.b\nfrom gaussconv_plugin import sub\n")
    (tmp_path / "tools").mkdir()
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    g = import_graph()
    assert g["gaussconv_plugin"] == {"gaussconv_plugin.a": 1}
    assert g["gaussconv_plugin.a"] == {"gaussconv_plugin.b": 2}  # `import os` is outside the set
    assert g["gaussconv_plugin.b"] == {"gaussconv_plugin.sub.c": 2}  # inside a function
    assert g["gaussconv_plugin.sub.c"] == {"gaussconv_plugin.a": 2}  # two levels up
    assert g["gaussconv_plugin.d"] == {"gaussconv_plugin.b": 1, "gaussconv_plugin.sub": 2}
    assert cycles(g) == [["gaussconv_plugin.a", "gaussconv_plugin.b", "gaussconv_plugin.sub.c"]]


# ------------------------------------------------------------------------------------------------ the house
def test_the_walk_sees_the_known_dependencies():
    """Positive control: edges that must exist are found (a walker that sees nothing would pass the next test)."""
    g = import_graph()
    assert len(g) >= 40
    assert "gaussconv_plugin._autohook" in g["gaussconv_plugin"]
    assert "gaussconv_plugin.yolo.adapter" in g["gaussconv_plugin._autohook"]  # function-level
    assert "gaussconv_plugin.conv" in g["gaussconv_plugin.swap"]
    assert any(m.startswith("tools.evidence.") for m in g["tools.ablation"])


def test_no_import_cycle_in_gaussconv_plugin_and_tools():
    g = import_graph()
    found = cycles(g)
    assert not found, "import cycles (break each by moving what both sides need into a module below them):\n" + \
        "\n".join(f"- {', '.join(c)}: {_describe(c, g)}" for c in found)
