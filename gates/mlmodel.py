"""The MLmodel file of an MLflow model directory, parsed once (the service puts it in the
GateContext; the CLI's scan reads it here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_mlmodel(root: Path) -> dict[str, Any]:
    """The parsed MLmodel, or {} when there is none or it is not a YAML mapping (the
    security gate reports a broken MLmodel itself)."""
    path = root / "MLmodel"
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8", errors="replace"))
    except yaml.YAMLError:
        return {}
    return loaded if isinstance(loaded, dict) else {}
