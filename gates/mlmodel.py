"""The MLmodel file of an MLflow model directory, parsed once (the service puts it in the
GateContext; the CLI's scan reads it here)."""

from __future__ import annotations

import json
from collections.abc import Mapping
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


def model_inputs(mlmodel: Mapping[str, Any]) -> tuple[frozenset[str] | None, str]:
    """The input column names of the MLmodel signature, or None when every column counts.

    A missing, unreadable or tensor-based signature names no columns: every column then
    counts as a model input, the stricter reading.
    """
    signature = mlmodel.get("signature")
    raw = signature.get("inputs") if isinstance(signature, Mapping) else None
    if raw is None:
        return None, "no signature: every column counts as a model input"
    try:
        specs = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return None, "unreadable signature inputs: every column counts as a model input"
    if not isinstance(specs, list):
        return None, "unreadable signature inputs: every column counts as a model input"
    names = [s.get("name") for s in specs if isinstance(s, Mapping)]
    if not names or not all(isinstance(n, str) and n for n in names):
        return None, "the signature names no columns (tensor inputs): every column counts"
    return frozenset(str(n) for n in names), "signature"
