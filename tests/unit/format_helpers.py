"""What the per-format test modules (test_format_*.py) share."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import numpy as np

from gates.base import Finding, Severity
from gates.security.callables import CallablePolicy

POLICY = CallablePolicy()
# GLOBAL 'os system', then (cmd,) REDUCE: the classic payload, written as opcodes.
OS_SYSTEM_PICKLE = b"\x80\x04cos\nsystem\n\x8c\x0ctouch MARKER\x85R."
# The start of a SavedModel protobuf: schema version 1, one meta graph tagged "serve".
SAVED_MODEL_HEAD = b"\x08\x01\x12\x0b\x0a\x07\x0a\x05serve\x12\x00"


def rule_pairs(findings: list[Finding]) -> list[tuple[str, Severity]]:
    """(rule id, severity) of each finding, sorted."""
    return sorted((f.rule_id, f.severity) for f in findings)


def one_finding(findings: list[Finding], rule: str) -> Finding:
    """The only finding of `rule` (fails, listing them all, when there is not exactly one)."""
    matching = [f for f in findings if f.rule_id == rule]
    assert len(matching) == 1, [f.to_dict() for f in findings]
    return matching[0]


def safetensors_bytes(header: dict[str, Any], data: bytes, pad: bool = True) -> bytes:
    """A safetensors file: 8-byte header length, the JSON header (padded to 8), the data."""
    raw = json.dumps(header).encode()
    if pad:
        raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def benign_safetensors() -> bytes:
    weight = np.arange(4, dtype="<f4").tobytes()
    bias = np.arange(3, dtype="<i8").tobytes()
    header = {
        "__metadata__": {"format": "pt"},
        "weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "bias": {"dtype": "I64", "shape": [3], "data_offsets": [16, 40]},
    }
    return safetensors_bytes(header, weight + bias)


def lambda_bytecode() -> str:
    """Stand-in for marshaled code of `lambda x: __import__("os").system("touch MARKER")`:
    never unmarshaled, only its printable strings are read."""
    return base64.b64encode(b"\xe3\x00\x00\x00\xda\n__import__\xda\x02os\xda\x06system").decode()
