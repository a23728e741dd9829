"""The layer rule (docs/architecture.md), checked on every import in the tree, lazy ones too:

    base ← kernels ← quant ← model ← qa ← heads ← decode ← policy/methods ← judge/engines
         ← settings/api ← eval/bench ← training/demos ← cli

A module imports only from its own layer or below, and no import cycle exists between modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# where each package's files live (pyproject's package-dir mapping)
PACKAGE_DIRS = {"tigerdecode": "src/tigerdecode", "tigerdecode.kernels": "kernels",
                "tigerdecode.heads": "heads", "tigerdecode.training": "training",
                "tigerdecode.demos": "demos", "tigerdecode.datasets": "data"}
LAYERS = [
    ("tigerdecode.errors", "tigerdecode.fsutil", "tigerdecode.result", "tigerdecode.datasets"),
    ("tigerdecode.kernels",),
    ("tigerdecode.quant",),
    ("tigerdecode.model",),
    ("tigerdecode.qa",),
    ("tigerdecode.heads",),
    ("tigerdecode.decode",),
    ("tigerdecode.policy", "tigerdecode.methods"),
    ("tigerdecode.judge", "tigerdecode.engines"),
    ("tigerdecode.settings", "tigerdecode.api"),
    ("tigerdecode.eval", "tigerdecode.bench"),
    ("tigerdecode.training", "tigerdecode.demos"),
    ("tigerdecode.cli", "tigerdecode.__main__"),
]
# the top-level package is the public façade (lazy re-exports, the version): not a layer
EXEMPT = {"tigerdecode"}


def layer_of(module: str) -> int | None:
    best = None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if module == p or module.startswith(p + "."):
                if best is None or len(p) > best[1]:
                    best = (i, len(p))
    return None if best is None else best[0]


def project_sources() -> dict[str, str]:
    """{dotted module name: source} for every project module."""
    out = {}
    for pkg, d in PACKAGE_DIRS.items():
        base = ROOT / d
        for f in base.rglob("*.py"):
            rel = f.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([pkg, *parts])
            if any(name == q or name.startswith(q + ".") for q in PACKAGE_DIRS if q != pkg
                   and q.startswith(pkg + ".")):
                continue  # a mapped subpackage is read from its own folder
            out[name] = f.read_text(encoding="utf-8")
    return out


def imports_of(name: str, source: str, modules: set[str]) -> set[str]:
    """Project modules ``name`` imports (any depth in the file), resolved to module names."""
    found = set()
    is_pkg = any(m.startswith(name + ".") for m in modules)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tigerdecode"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                base = ".".join(parent + ([base] if base else []))
            if not base.startswith("tigerdecode"):
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m in modules or layer_of(m) is not None}


def violations(sources: dict[str, str]) -> list[str]:
    modules = set(sources)
    graph = {n: imports_of(n, s, modules) - {n} for n, s in sources.items()}
    bad = []
    for n, deps in sorted(graph.items()):
        if n in EXEMPT:
            continue
        ln = layer_of(n)
        if ln is None:
            bad.append(f"{n} belongs to no layer (add it to LAYERS)")
            continue
        for dep in sorted(deps):
            if dep in EXEMPT:
                continue
            ld = layer_of(dep)
            if ld is not None and ld > ln:
                bad.append(f"{n} (layer {ln}) imports {dep} (layer {ld}): upward")
    bad += [f"import cycle: {' -> '.join(c)}" for c in _cycles(
        {n: {d for d in deps if d not in EXEMPT} for n, deps in graph.items() if n not in EXEMPT})]
    return bad


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp) + [sorted(comp)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_tree_follows_the_layer_rule():
    assert violations(project_sources()) == []


def test_the_check_catches_an_upward_import_and_a_cycle():
    src = project_sources()
    src["tigerdecode.decode.sampling"] += "\n\ndef _f():\n    from tigerdecode.api import generate\n"
    assert any("tigerdecode.decode.sampling (layer 6) imports tigerdecode.api" in v
               for v in violations(src))
    src = project_sources()
    src["tigerdecode.model.taps"] += "\nimport tigerdecode.model.prompting\n"
    src["tigerdecode.model.prompting"] += "\nimport tigerdecode.model.taps\n"
    assert any(v.startswith("import cycle") and "tigerdecode.model.taps" in v
               for v in violations(src))


def test_few_top_level_modules():
    top = [p for p in (ROOT / "src/tigerdecode").glob("*.py")]
    assert len(top) <= 10, sorted(p.name for p in top)
