"""The packages import one way: each module only from its own layer or those below it, and no
module reaches itself through others. Imports inside functions count as much as those at the top:
moving an import into a function does not hide an arrow from this test. The folders are the layers:

    usm                 the core: models, layers, scan, trainer, sampler, data, files, provenance
    baselines           ZigMa, DiT and the U-Net control, built from usm
    analysis.metrics    what a study point computes: quality metrics, FID, FLOPs, memory, speed
    analysis.report     what reads records: collect, tables, plots, the paper report (grids as arguments)
    experiments         grids as data, the launcher, a point's pipeline (it measures, then reports)
    analysis.bench      benchmarks and checks that run grids and models; analysis.tools, the
                        repository's upkeep; analysis.__main__, the command line: the top of the stack
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("usm", "baselines", "experiments", "analysis")
LAYERS = {"usm": 0, "baselines": 1, "analysis.metrics": 2, "analysis.report": 3, "experiments": 4,
          "analysis.bench": 5, "analysis.tools": 5, "analysis.__main__": 5, "analysis": 2}


def layer(module: str) -> int:
    parts = module.split(".")
    for depth in (2, 1):
        if ".".join(parts[:depth]) in LAYERS:
            return LAYERS[".".join(parts[:depth])]
    raise AssertionError(f"{module} has no layer: put it in one of {', '.join(LAYERS)}")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "__pycache__" not in path.parts:
                name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                found[name.removesuffix(".__init__")] = path
    return found


def imports(found: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the first-party modules it imports (anywhere in its body), each resolved to the
    deepest module that exists: ``from usm.ssm import _simd`` is an arrow to ``usm.ssm._simd``."""
    def resolve(name: str) -> str | None:
        parts = name.split(".")
        while parts and ".".join(parts) not in found:
            parts.pop()
        return ".".join(parts) or None

    graph = {}
    for name, path in found.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {resolve(a.name) for a in node.names if a.name.split(".")[0] in PACKAGES}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] in PACKAGES:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in found else resolve(node.module))
        graph[name] = targets - {None, name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


GRAPH = imports(modules())


def test_no_module_imports_from_a_higher_layer():
    upward = sorted(f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets if layer(b) > layer(a))
    assert not upward, "imports against the layers (module docstring): " + "; ".join(upward)


def test_no_import_cycles():
    assert cycles(GRAPH) == []


def test_the_walker_sees_imports_inside_functions_and_finds_cycles():
    found = imports(modules())
    assert "usm.ssm._numba_kernels" in found["usm.ssm.numba_cpu"]  # imported inside a function there
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    order = ("analysis.metrics.quality", "analysis.report.tables", "experiments.launch", "analysis.bench.gpu_check")
    assert [layer(m) for m in order] == sorted(layer(m) for m in order) == [2, 3, 4, 5]
