"""NumPy ``.npy`` arrays (and ``.npz``, a zip of them) (SEC-NPY-001..003).

An ``.npy`` file is the magic ``\\x93NUMPY``, a version (1.0, 2.0 or 3.0), a 2- or 4-byte
little-endian header length, a Python-literal dict ``{'descr', 'fortran_order', 'shape'}``,
then the array bytes. For an array whose dtype holds Python objects (``|O``, or a
structured dtype with an ``O`` field) the "array bytes" are a pickle, and
``np.load(..., allow_pickle=True)`` - the default before NumPy 1.16.3 and still what many
loaders pass - runs it.

- SEC-NPY-001 (MEDIUM): object array, the payload is a pickle. The pickle itself goes to
  the pickle scanner (the callable passed in), whose findings are returned alongside, so a
  benign object array is MEDIUM and a malicious one is whatever the pickle engine says
  (CRITICAL for ``os.system``).
- SEC-NPY-002 (HIGH): malformed: bad magic or version, header longer than
  ``Limits.max_header_bytes``, a header that is not a dict literal with exactly the three
  keys, a descr NumPy does not accept, a bad shape, or fewer data bytes than the shape
  needs. A file we cannot parse is a finding, never a pass.
- SEC-NPY-003 (MEDIUM): bytes after the array data. NumPy ignores them; another reader
  may not (polyglot). Evidence gives the offset; the orchestrator may scan the tail.

The header is parsed with ``ast.literal_eval`` (literals only, as NumPy does) and the dtype
is rebuilt from that literal with ``numpy.lib.format.descr_to_dtype``; the array is never
loaded. ``.npz`` needs nothing extra: the zip walker calls ``scan_npy`` per member.
"""

from __future__ import annotations

import ast
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npformat

from gates.base import Finding
from gates.security import rules
from gates.security.common import Limits, Location, ScanLimitExceeded

MAGIC = b"\x93NUMPY"
PickleScanner = Callable[[bytes, Location], list[Finding]]

# version -> (struct format of the header length, header text encoding)
_VERSIONS = {(1, 0): ("<H", "latin1"), (2, 0): ("<I", "latin1"), (3, 0): ("<I", "utf8")}


class _Malformed(ValueError):
    pass


@dataclass(frozen=True)
class NpyHeader:
    version: tuple[int, int]
    dtype: np.dtype[Any]
    descr: Any
    shape: tuple[int, ...]
    fortran_order: bool
    data_offset: int  # first byte after the header

    @property
    def data_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def looks_like_npy(head: bytes) -> bool:
    return head.startswith(MAGIC)


def _parse_prefix(head: bytes, limits: Limits) -> tuple[tuple[int, int], int, int, str]:
    """(version, header length, header start, encoding) from the first 12 bytes."""
    if not head.startswith(MAGIC) or len(head) < 10:
        raise _Malformed("missing \\x93NUMPY magic")
    version = (head[6], head[7])
    if version not in _VERSIONS:
        raise _Malformed(f"unknown .npy version {version[0]}.{version[1]}")
    fmt, encoding = _VERSIONS[version]
    start = 8 + struct.calcsize(fmt)
    if len(head) < start:
        raise _Malformed("truncated before the header length")
    (length,) = struct.unpack(fmt, head[8:start])
    if length > limits.max_header_bytes:
        raise _Malformed(f"header length {length} exceeds the {limits.max_header_bytes} limit")
    return version, length, start, encoding


def _parse_dict(text: str) -> dict[str, Any]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, RecursionError, MemoryError) as exc:
        raise _Malformed(f"header is not a Python literal ({type(exc).__name__})") from exc
    if not isinstance(value, dict) or set(value) != {"descr", "fortran_order", "shape"}:
        raise _Malformed(f"header is not the {{descr, fortran_order, shape}} dict: {text[:200]!r}")
    return value


def parse_header(head: bytes, limits: Limits) -> NpyHeader:
    """Parse the header from the first bytes of the file (raises _Malformed)."""
    version, length, start, encoding = _parse_prefix(head, limits)
    raw = head[start : start + length]
    if len(raw) < length:
        raise _Malformed(f"header is {len(raw)} bytes, the length field says {length}")
    try:
        header = _parse_dict(raw.decode(encoding))
    except UnicodeDecodeError as exc:
        raise _Malformed(f"header is not {encoding}") from exc
    shape, fortran = header["shape"], header["fortran_order"]
    if not isinstance(shape, tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise _Malformed(f"shape {shape!r} is not a tuple of sizes")
    if not isinstance(fortran, bool):
        raise _Malformed(f"fortran_order {fortran!r} is not a bool")
    try:
        # numpy.lib.format carries no annotations
        dtype = npformat.descr_to_dtype(header["descr"])  # type: ignore[no-untyped-call]
    except Exception as exc:  # numpy raises many types on odd literals: all mean malformed
        raise _Malformed(f"descr {str(header['descr'])[:200]} is not a dtype ({exc})") from exc
    return NpyHeader(version, dtype, header["descr"], shape, fortran, start + length)


def _read_head(data_or_path: bytes | Path, limits: Limits) -> bytes:
    if isinstance(data_or_path, bytes | bytearray | memoryview):
        return bytes(data_or_path[: 12 + limits.max_header_bytes])
    with Path(data_or_path).open("rb") as fh:
        prefix = fh.read(12)
        try:
            _, length, start, _ = _parse_prefix(prefix, limits)
        except _Malformed:
            return prefix
        return prefix + fh.read(start + length - len(prefix))


def _size(data_or_path: bytes | Path) -> int:
    if isinstance(data_or_path, bytes | bytearray | memoryview):
        return len(data_or_path)
    return Path(data_or_path).stat().st_size


def _payload(data_or_path: bytes | Path, offset: int, limits: Limits) -> bytes:
    size = _size(data_or_path) - offset
    if size > limits.max_member_bytes:
        raise ScanLimitExceeded(
            "member_size", f"object-array pickle of {size} bytes exceeds the in-memory limit"
        )
    if isinstance(data_or_path, bytes | bytearray | memoryview):
        return bytes(data_or_path[offset:])
    with Path(data_or_path).open("rb") as fh:
        fh.seek(offset)
        return fh.read()


def scan_npy(
    data_or_path: bytes | Path,
    where: Location,
    limits: Limits,
    pickle_scanner: PickleScanner,
) -> list[Finding]:
    """Findings for one .npy blob (bytes of a zip member, or a file on disk).

    Raises ScanLimitExceeded when an object array's pickle is larger than
    ``limits.max_member_bytes`` (the orchestrator turns it into a SEC-LIMIT finding).
    """
    try:
        header = parse_header(_read_head(data_or_path, limits), limits)
    except _Malformed as exc:
        return [
            rules.NPY_MALFORMED.finding(
                f"malformed .npy: {exc}",
                where,
                {"reason": str(exc)},
            )
        ]
    evidence = {
        "descr": str(header.descr)[:200],
        "shape": list(header.shape),
        "version": f"{header.version[0]}.{header.version[1]}",
        "data_offset": header.data_offset,
    }
    if header.dtype.hasobject:
        payload = _payload(data_or_path, header.data_offset, limits)
        return [
            rules.NPY_OBJECT_ARRAY.finding(
                "object array (pickle inside): np.load(allow_pickle=True) unpickles it",
                where,
                {**evidence, "pickle_bytes": len(payload)},
            ),
            *pickle_scanner(payload, where),
        ]
    expected_end = header.data_offset + header.data_bytes
    size = _size(data_or_path)
    if size < expected_end:
        return [
            rules.NPY_MALFORMED.finding(
                f"malformed .npy: {size - header.data_offset} data bytes, shape needs "
                f"{header.data_bytes}",
                where,
                {**evidence, "file_size": size, "expected_size": expected_end},
            )
        ]
    if size > expected_end:
        return [
            rules.NPY_TRAILING_DATA.finding(
                f"{size - expected_end} bytes after the array data (ignored by numpy)",
                where,
                {**evidence, "tail_offset": expected_end, "tail_size": size - expected_end},
            )
        ]
    return []
