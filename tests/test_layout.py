"""The shape of the code: imports point one way with no circles, and no module branches on another's kind.

Read from the source (every import statement, lazy and ``TYPE_CHECKING`` ones
included), so a violation fails here rather than in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYER = {"schemas": 0, "dedup": 1, "simulators": 1, "generators": 2, "filters": 2, "pipelines": 3}
MAY_IMPORT = {"dedup": {"schemas"}, "schemas": set(), "simulators": {"schemas"}, "generators": {"schemas", "simulators"},
              "filters": {"schemas", "simulators"}, "pipelines": set(LAYER)}


def modules() -> dict[str, Path]:
    found = {}
    for package in LAYER:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module of ours: line}."""
    mods = modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in mods.items():
        edges = {}
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for target in filter(None, map(resolve, names)):
                if target != module:
                    edges.setdefault(target, node.lineno)
        graph[module] = edges
    return graph


def test_imports_point_one_way():
    wrong = [f"{m}:{line} imports {t}" for m, edges in import_graph().items() for t, line in edges.items()
             if t.split(".")[0] != m.split(".")[0] and t.split(".")[0] not in MAY_IMPORT[m.split(".")[0]]]
    assert not wrong, wrong


def test_no_import_circles():
    graph = import_graph()
    packages = set(LAYER)  # a package's __init__ re-exporting its own modules is not a circle
    circles = []

    def walk(start: str, at: str, seen: tuple[str, ...]) -> None:
        for nxt in graph.get(at, {}):
            if nxt in packages:
                continue
            if nxt == start:
                circles.append(" -> ".join((*seen, nxt)))
            elif nxt not in seen and nxt > start:  # each circle once, from its smallest module
                walk(start, nxt, (*seen, nxt))

    for module in graph:
        if module not in packages:
            walk(module, module, (module,))
    assert not circles, circles


def test_no_branch_on_a_kind_name_outside_its_module():
    from simulators import KINDS

    kinds = set(KINDS.names())
    found = []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                strings = {n.value for n in [node.left, *node.comparators] if isinstance(n, ast.Constant)}
                for kind in strings & kinds:
                    if module != f"simulators.kinds.{kind}":
                        found.append(f"{module}:{node.lineno} compares with {kind!r}")
    assert not found, found


def test_a_registered_class_states_its_name_once():
    """``@REGISTRY.register("x")`` names the class; a ``name = "x"`` beside it is the same fact twice."""
    twice = []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            names = {d.args[0].value for d in node.decorator_list if isinstance(d, ast.Call)
                     and isinstance(d.func, ast.Attribute) and d.func.attr == "register"
                     and d.args and isinstance(d.args[0], ast.Constant)}
            for stmt in node.body:
                target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else getattr(
                    stmt, "target", None)
                if isinstance(target, ast.Name) and target.id == "name" and getattr(stmt.value, "value", None) in names:
                    twice.append(f"{module}:{stmt.lineno} {node.name}")
    assert not twice, twice
