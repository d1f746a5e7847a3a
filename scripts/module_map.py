"""The package's modules by wing with line counts, the imports that run against the wings' order,
and the circles in its import graph.

    python scripts/module_map.py [PACKAGE_DIR]

The wings, lowest first (`WINGS`): the ground every wing may use, then the four modules of the
original design, then the shell. A module may import its own wing and the wings below it, never
one above it nor a sibling of its own level (training and recognition do not know each other).
Every `import` / `from ... import` of a mimika module counts, at module level or inside a function
(a lazy import still ties the two modules together); a circle is a strongly connected group of
modules that import each other, directly or through others.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


#: wing -> (level, what it holds); a module's wing is its sub-package, the shell holds the rest
WINGS = {
    "common": (0, "the ground: errors, file writes, the container format, labels, metrics, progress, choices, "
                  "devices, ONNX sessions"),
    "prepare": (1, "1. input preparation: images, video, detection, crops, datasets/"),
    "network": (2, "2. network: architectures, the model and its config, ONNX export and prediction"),
    "training": (3, "3. training: options, the loop, schedules, checkpoints, augmentation, torchrun, calibration"),
    "recognition": (3, "4. recognition: the Recognizer, results, tracking, annotation, worker processes"),
    "shell": (4, "the shell: the API, the command line, the service, reports"),
}
PACKAGE_ROOT = {"mimika", "mimika._moved"}  # the lazy API and the old import paths: above and below everything


def wing_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in WINGS and parts[1] != "shell" else "shell"


def against_order(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports from a lower wing to a higher one, or between two wings of one level."""
    bad = []
    for a in sorted(graph):
        for b in sorted(graph[a]):
            if a in PACKAGE_ROOT or b in PACKAGE_ROOT:
                continue
            wa, wb = wing_of(a), wing_of(b)
            if WINGS[wb][0] > WINGS[wa][0] or (wa != wb and WINGS[wa][0] == WINGS[wb][0]):
                bad.append((a, b))
    return bad


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
    for wing, (level, what) in sorted(WINGS.items(), key=lambda kv: kv[1][0]):
        print(f"{wing} (level {level}): {what}")
        for f in files:
            if wing_of(module_name(root, f)) == wing:
                n = len(f.read_text().splitlines())
                total += n
                print(f"{n:>6}  {f.relative_to(root.parent)}")
    print(f"{total:>6}  total, {len(files)} modules")
    bad = against_order(graph)
    print(f"\nimports against the wings' order: {len(bad)}")
    for a, b in bad:
        print(f"  {a} ({wing_of(a)}) -> {b} ({wing_of(b)})")
    found = circles(graph)
    print(f"\nimport circles: {len(found)}")
    for c in found:
        print("  " + " <-> ".join(c))


if __name__ == "__main__":
    main()
