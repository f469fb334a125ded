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
    "service.decision": ("service.api", "service.runs", "service.mlflow", "service.sandbox"),
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
    }, loose
    demo_imports = {
        f"{_module_name(path)} imports {name}"
        for path in (ROOT / "service").rglob("*.py")
        for name in _imported_modules(path)
        if name.split(".")[0] == "demo"
    }
    assert not demo_imports, demo_imports
