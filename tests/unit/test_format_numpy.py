"""NumPy .npy/.npz (SEC-NPY-*): numeric arrays pass, object arrays send their pickle to the
pickle engine, malformed headers and trailing bytes are findings.

Every malicious sample is built from bytes, JSON or protobuf fields; none is ever loaded by
the library it targets.
"""

from __future__ import annotations

import dataclasses
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gates.base import Finding, Severity
from gates.security.common import Limits, Location, ScanLimitExceeded
from gates.security.formats import numpy_files
from tests.unit.format_helpers import OS_SYSTEM_PICKLE, one_finding, rule_pairs


class _PickleSpy:
    """Stands in for the pickle engine: records what it was given, reports one finding."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []

    def __call__(self, data: bytes, where: Location) -> list[Finding]:
        self.calls.append(data)
        spy = Finding("SEC-PICKLE-SPY", Severity.CRITICAL, "spy", where.file, where.member)
        return [dataclasses.replace(spy, evidence={"n": len(data)})]


def _npy_bytes(header: str, payload: bytes, version: tuple[int, int] = (1, 0)) -> bytes:
    text = header.encode("latin1")
    fmt = "<H" if version == (1, 0) else "<I"
    prefix_len = 8 + struct.calcsize(fmt)
    text += b" " * (-(prefix_len + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY" + bytes(version) + struct.pack(fmt, len(text)) + text + payload


def test_numeric_npy_from_np_save_is_clean(tmp_path: Path) -> None:
    path = tmp_path / "weights.npy"
    np.save(path, np.arange(12, dtype=np.float32).reshape(3, 4))
    spy = _PickleSpy()
    assert numpy_files.looks_like_npy(path.read_bytes()[:16])
    assert numpy_files.scan_npy(path, Location("weights.npy"), Limits(), spy) == []
    assert numpy_files.scan_npy(path.read_bytes(), Location("weights.npy"), Limits(), spy) == []
    assert spy.calls == []


def test_object_npy_sends_its_pickle_to_the_pickle_engine(tmp_path: Path) -> None:
    path = tmp_path / "objects.npy"
    np.save(path, np.array([1, "two", None], dtype=object), allow_pickle=True)
    spy = _PickleSpy()
    findings = numpy_files.scan_npy(path, Location("objects.npy"), Limits(), spy)
    assert rule_pairs(findings) == [
        ("SEC-NPY-001", Severity.MEDIUM),
        ("SEC-PICKLE-SPY", Severity.CRITICAL),
    ]
    hit = one_finding(findings, "SEC-NPY-001")
    assert hit.evidence["descr"] == "|O"
    [payload] = spy.calls
    assert payload.startswith(b"\x80") and hit.evidence["pickle_bytes"] == len(payload)


def test_hand_made_object_npy_with_os_system_payload() -> None:
    data = _npy_bytes("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", OS_SYSTEM_PICKLE)
    spy = _PickleSpy()
    findings = numpy_files.scan_npy(data, Location("evil.npy"), Limits(), spy)
    assert spy.calls == [OS_SYSTEM_PICKLE]
    assert one_finding(findings, "SEC-NPY-001").evidence["data_offset"] == len(data) - len(
        OS_SYSTEM_PICKLE
    )


def test_structured_dtype_with_an_object_field_is_a_pickle_too() -> None:
    header = "{'descr': [('a', '<i8'), ('b', '|O')], 'fortran_order': False, 'shape': (2,), }"
    spy = _PickleSpy()
    findings = numpy_files.scan_npy(
        _npy_bytes(header, OS_SYSTEM_PICKLE), Location("s"), Limits(), spy
    )
    assert "SEC-NPY-001" in {f.rule_id for f in findings}
    assert spy.calls == [OS_SYSTEM_PICKLE]


def test_npz_members_are_scanned_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "arrays.npz"
    np.savez(path, weights=np.ones((2, 2)), labels=np.array(["a", {"b": 1}], dtype=object))
    spy = _PickleSpy()
    by_member: dict[str, list[str]] = {}
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            data = zf.read(name)
            assert numpy_files.looks_like_npy(data)
            where = Location("arrays.npz").child(name)
            found = numpy_files.scan_npy(data, where, Limits(), spy)
            by_member[name] = sorted(f.rule_id for f in found)
    assert by_member == {"weights.npy": [], "labels.npy": ["SEC-NPY-001", "SEC-PICKLE-SPY"]}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x93NUMPY\x09\x00" + b"\0" * 20, "unknown .npy version"),
        (_npy_bytes("__import__('os').system('id')", b""), "not a Python literal"),
        (_npy_bytes("{'descr': '<f8', 'shape': (1,)}", b"\0" * 8), "{descr, fortran_order, shape}"),
        (_npy_bytes("{'descr': '<f8', 'fortran_order': 1, 'shape': (1,)}", b"\0" * 8), "bool"),
        (_npy_bytes("{'descr': 'nonsense', 'fortran_order': False, 'shape': (1,)}", b""), "dtype"),
        (_npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}", b""), "shape"),
        (
            _npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (4,)}", b"\0" * 8),
            "needs 32",
        ),
        (b"\x93NUMPY\x01\x00\xff\xff{'descr'", "the length field says 65535"),
    ],
)
def test_malformed_npy(data: bytes, reason: str) -> None:
    findings = numpy_files.scan_npy(data, Location("bad.npy"), Limits(), _PickleSpy())
    hit = one_finding(findings, "SEC-NPY-002")
    assert hit.severity == Severity.HIGH
    assert reason in hit.message, hit.message


def test_npy_header_over_the_limit_is_malformed_without_reading_it() -> None:
    data = b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**31) + b"{"
    hit = one_finding(
        numpy_files.scan_npy(data, Location("x"), Limits(), _PickleSpy()), "SEC-NPY-002"
    )
    assert "exceeds" in hit.message


def test_bytes_after_the_array_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "tail.npy"
    np.save(path, np.zeros(4))
    clean_size = path.stat().st_size
    with path.open("ab") as fh:
        fh.write(OS_SYSTEM_PICKLE)
    hit = one_finding(
        numpy_files.scan_npy(path, Location("t"), Limits(), _PickleSpy()), "SEC-NPY-003"
    )
    assert hit.evidence["tail_offset"] == clean_size


def test_object_pickle_larger_than_the_member_limit_is_a_limit_hit() -> None:
    data = _npy_bytes("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", b"\x80" * 64)
    with pytest.raises(ScanLimitExceeded):
        numpy_files.scan_npy(data, Location("x"), Limits(max_member_bytes=16), _PickleSpy())


# -- skops ------------------------------------------------------------------------------
