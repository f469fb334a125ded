"""House rule: gates/ is pure. It never imports the service, a DB, HTTP or MLflow's client."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("service", "sqlalchemy", "fastapi", "httpx", "requests", "mlflow")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_gates_import_nothing_with_side_effects() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "gates").rglob("*.py")
        for name in _imported_modules(path)
        if name.split(".")[0] in FORBIDDEN
    }
    assert not offenders, offenders
    assert list((ROOT / "gates").rglob("*.py")), "no gate modules found"


# Layers of the service, outermost first. A layer may import the layers below it, never the
# layers above it: the HTTP API drives runs, runs use the store; the store knows nothing of
# either. The MLflow adapter and the sandbox are leaves: they import no other layer.
LAYER_MAY_NOT_IMPORT = {
    "service.store": ("service.api", "service.runs", "service.mlflow", "service.sandbox"),
    "service.runs": ("service.api",),
    "service.mlflow": ("service.api", "service.runs", "service.store", "service.sandbox"),
    "service.sandbox": ("service.api", "service.runs", "service.store", "service.mlflow"),
    # the decision reads gate results and waivers handed to it; it fetches nothing itself
    # (and knows no table: statuses come from service/vocabulary.py)
    "service.decision": (
        "service.api",
        "service.runs",
        "service.mlflow",
        "service.sandbox",
        "service.store",
    ),
    # keys and bundles: a leaf, it knows nothing of runs, stores or registries
    "service.integrity": (
        "service.api",
        "service.runs",
        "service.store",
        "service.mlflow",
        "service.sandbox",
        "service.decision",
    ),
}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_service_layers_import_downwards_only() -> None:
    offenders: set[str] = set()
    for layer, forbidden in LAYER_MAY_NOT_IMPORT.items():
        package = ROOT.joinpath(*layer.split("."))
        assert package.is_dir(), f"layer {layer} is missing"
        for path in package.rglob("*.py"):
            for name in _imported_modules(path):
                if any(name == f or name.startswith(f + ".") for f in forbidden):
                    offenders.add(f"{_module_name(path)} imports {name}")
    assert not offenders, sorted(offenders)


def test_service_is_grouped_by_layer_and_ships_no_demo() -> None:
    loose = sorted(p.name for p in (ROOT / "service").glob("*.py") if p.name != "__init__.py")
    # Only the composition root and the cross-cutting modules stay at the top.
    assert set(loose) <= {
        "app.py",
        "cli.py",
        "config.py",
        "errors.py",
        "metrics.py",
        "policy.py",
        "policy_reference.py",
        "processes.py",
        "startup.py",
        "vocabulary.py",
    }, loose
    demo_imports = {
        f"{_module_name(path)} imports {name}"
        for path in (ROOT / "service").rglob("*.py")
        for name in _imported_modules(path)
        if name.split(".")[0] == "demo"
    }
    assert not demo_imports, demo_imports


def _service_import_graph() -> dict[str, set[str]]:
    """service module -> the service modules it imports (at any level of the file)."""
    modules = {_module_name(p): p for p in (ROOT / "service").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imported_modules(path):
            # `from service.runs import guard` names a package; the module is what counts
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not imported.endswith("__init__"):
                targets.add(imported)
        graph[name] = targets
    return graph


def test_no_import_cycle_in_the_service() -> None:
    """Issue 22: guard.py and promotion.py imported each other (one inside a function)."""
    graph = _service_import_graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, cycles


def test_the_gatekeeper_tags_are_spelt_in_one_module() -> None:
    """`gatekeeper.status` and the other owned tags: service/vocabulary.py's TagKey, used
    everywhere else, so a rename or a new writer cannot miss one spelling."""
    spelt = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "service").rglob("*.py")
        if '"gatekeeper.status"' in path.read_text()
    )
    assert spelt == ["service/vocabulary.py"], spelt
