"""The MLmodel file of an MLflow model directory, parsed once (the service puts it in the
GateContext; the CLI's scan reads it here)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class InputColumn:
    """One named input of the MLmodel signature."""

    name: str
    type: str | None  # MLflow's type name (double, long, string, array, tensor, ...)
    required: bool = True


def signature_columns(mlmodel: Mapping[str, Any]) -> tuple[InputColumn, ...] | None:
    """The signature's named inputs in its order, or None when it names no columns.

    The MLmodel is the model author's file: nothing in it is trusted to have the shape MLflow
    writes (see `_input_specs`).
    """
    specs, _ = _input_specs(mlmodel)
    if specs is None:
        return None
    return tuple(
        InputColumn(
            name=str(spec["name"]),
            type=str(spec["type"]) if isinstance(spec.get("type"), str) else None,
            required=spec.get("required", True) is not False,
        )
        for spec in specs
    )


def model_inputs(mlmodel: Mapping[str, Any]) -> tuple[frozenset[str] | None, str]:
    """The input column names of the MLmodel signature, or None when every column counts.

    A missing, unreadable or tensor-based signature names no columns: every column then
    counts as a model input, the stricter reading.
    """
    specs, why = _input_specs(mlmodel)
    if specs is None:
        return None, why
    return frozenset(str(s["name"]) for s in specs), why


def _input_specs(mlmodel: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]] | None, str]:
    """The signature's named input specs, or None and why every column counts instead."""
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
    named = [s for s in specs if isinstance(s, Mapping)]
    if not named or not all(isinstance(s.get("name"), str) and s.get("name") for s in named):
        return None, "the signature names no columns (tensor inputs): every column counts"
    return named, "signature"
