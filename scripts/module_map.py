"""The package's module list with line counts, and the circles in its import graph.

    python scripts/module_map.py [PACKAGE_DIR]

Every `import` / `from ... import` of a mimika module counts, at module level or inside a
function (a lazy import still ties the two modules together); a circle is a strongly connected
group of modules that import each other, directly or through others.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(root: Path, path: Path, modules: set[str]) -> set[str]:
    """The package modules `path` imports (relative imports resolved)."""
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "mimika")
    files = sorted(root.rglob("*.py"))
    modules = {module_name(root, f) for f in files}
    graph = {module_name(root, f): imports_of(root, f, modules) for f in files}
    total = 0
    for f in files:
        n = len(f.read_text().splitlines())
        total += n
        print(f"{n:>6}  {f.relative_to(root.parent)}")
    print(f"{total:>6}  total, {len(files)} modules")
    found = circles(graph)
    print(f"\nimport circles: {len(found)}")
    for c in found:
        print("  " + " <-> ".join(c))


if __name__ == "__main__":
    main()
