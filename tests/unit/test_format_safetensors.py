"""safetensors header validation (SEC-SAFETENSORS-*) on files made here: benign ones pass,
crafted headers, offsets and polyglot tails are caught.

Every malicious sample is built from bytes, JSON or protobuf fields; none is ever loaded by
the library it targets.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from gates.base import Severity
from gates.security.common import Limits, Location
from gates.security.formats import safetensors
from tests.unit.format_helpers import (
    OS_SYSTEM_PICKLE,
    benign_safetensors,
    one_finding,
    safetensors_bytes,
)


def test_safetensors_benign_file_has_no_finding(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(benign_safetensors())
    assert safetensors.looks_like_safetensors(path.read_bytes()[:64])
    assert safetensors.scan_safetensors(path, Location("model.safetensors"), Limits()) == []
    assert safetensors.trailing_region(path) is None


def test_safetensors_2gib_header_length_is_judged_in_under_a_second(tmp_path: Path) -> None:
    path = tmp_path / "huge.safetensors"
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", 2 * 1024**3) + b'{"a":')
        fh.truncate(3 * 1024**3)  # sparse: the length fits in the file, still refused
    started = time.perf_counter()
    findings = safetensors.scan_safetensors(path, Location("huge.safetensors"), Limits())
    # reading the declared 2 GiB header would take far longer (and the memory); the margin
    # is for a loaded machine
    assert time.perf_counter() - started < 5.0
    hit = one_finding(findings, "SEC-SAFETENSORS-001")
    assert hit.severity == Severity.HIGH
    assert hit.evidence["header_length"] == 2 * 1024**3
    assert safetensors.trailing_region(path) is None


def test_safetensors_header_length_past_end_of_file(tmp_path: Path) -> None:
    path = tmp_path / "short.safetensors"
    path.write_bytes(struct.pack("<Q", 5000) + b"{}")
    hit = one_finding(
        safetensors.scan_safetensors(path, Location("s"), Limits()), "SEC-SAFETENSORS-001"
    )
    assert hit.evidence["file_size"] == 10


@pytest.mark.parametrize(
    ("raw_header", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2, 3]", "not an object"),
        (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {}}', "duplicate"),
        (b'{"a": {"dtype": "PICKLE", "shape": [1], "data_offsets": [0, 4]}}', "unknown dtype"),
        (b'{"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}', "shape"),
        (b'{"a": "not an entry"}', "entry is a str"),
        (b'{"__metadata__": {"k": 1}}', "__metadata__"),
        (b'{"a": "\xff\xfe"}', "not UTF-8"),
    ],
)
def test_safetensors_invalid_header(tmp_path: Path, raw_header: bytes, reason: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw_header)) + raw_header + b"\0" * 4)
    hit = one_finding(
        safetensors.scan_safetensors(path, Location("bad"), Limits()), "SEC-SAFETENSORS-002"
    )
    assert hit.severity == Severity.HIGH
    assert reason in hit.evidence["reason"]


def test_pickle_named_safetensors_is_not_taken_for_one(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(OS_SYSTEM_PICKLE)
    assert not safetensors.looks_like_safetensors(OS_SYSTEM_PICKLE)
    findings = safetensors.scan_safetensors(path, Location("model.safetensors"), Limits())
    assert {f.rule_id for f in findings} <= {"SEC-SAFETENSORS-001", "SEC-SAFETENSORS-002"}
    assert findings and all(f.severity == Severity.HIGH for f in findings)


@pytest.mark.parametrize(
    ("tensors", "data_len", "problem"),
    [
        ({"a": ("F32", [2], [0, 8]), "b": ("F32", [2], [4, 12])}, 12, "overlaps"),
        ({"a": ("F32", [2], [0, 8]), "b": ("F32", [2], [12, 20])}, 20, "gap of 4 bytes"),
        ({"a": ("F32", [2], [4, 12])}, 12, "gap of 4 bytes"),
        ({"a": ("F32", [3], [0, 8])}, 8, "needs 12"),
        ({"a": ("F32", [4], [0, 16])}, 8, "past the 8-byte data region"),
        ({"a": ("F32", [2], [8, 0])}, 8, "begin 8 > end 0"),
        ({"a": ("F32", [2], [0])}, 8, "is not [begin, end]"),
    ],
)
def test_safetensors_offsets_must_tile_the_data_region(
    tmp_path: Path,
    tensors: dict[str, tuple[str, list[int], list[int]]],
    data_len: int,
    problem: str,
) -> None:
    header = {k: {"dtype": d, "shape": s, "data_offsets": o} for k, (d, s, o) in tensors.items()}
    path = tmp_path / "offsets.safetensors"
    path.write_bytes(safetensors_bytes(header, b"\0" * data_len))
    hit = one_finding(
        safetensors.scan_safetensors(path, Location("o"), Limits()), "SEC-SAFETENSORS-003"
    )
    assert hit.severity == Severity.HIGH
    assert any(problem in p for p in hit.evidence["problems"]), hit.evidence


def test_safetensors_with_a_pickle_appended_is_a_polyglot(tmp_path: Path) -> None:
    benign = benign_safetensors()
    path = tmp_path / "polyglot.safetensors"
    path.write_bytes(benign + OS_SYSTEM_PICKLE)
    hit = one_finding(
        safetensors.scan_safetensors(path, Location("p"), Limits()), "SEC-SAFETENSORS-004"
    )
    assert hit.severity == Severity.HIGH
    assert hit.evidence["tail_offset"] == len(benign)
    assert hit.evidence["tail_size"] == len(OS_SYSTEM_PICKLE)
    start, end = safetensors.trailing_region(path) or (0, 0)
    assert path.read_bytes()[start:end] == OS_SYSTEM_PICKLE
