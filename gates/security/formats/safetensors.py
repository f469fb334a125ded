"""safetensors header validation (SEC-SAFETENSORS-001..004).

A safetensors file is an 8-byte little-endian header length N, N bytes of UTF-8 JSON (a
map from tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` plus an
optional ``"__metadata__"`` map of strings, padded with spaces), then the tensor bytes.
The format itself carries no code, which is why it is trusted: the checks below make sure
a file that *claims* to be safetensors really is one, and hides nothing.

- SEC-SAFETENSORS-001 (HIGH): the header length is larger than the scan limit
  (``Limits.max_header_bytes``, 100 MiB by default; the reference Rust reader refuses
  headers over 100 MB too) or larger than the file. A reader that trusts it allocates the
  length up front (e.g. 2 GiB), a denial of service. Judged from the 8 bytes alone; the
  header is never read.
- SEC-SAFETENSORS-002 (HIGH): the header is not what the specification allows: not UTF-8,
  not JSON, not an object, duplicate keys (two readers may keep different tensors), an
  entry that is not an object, an unknown dtype, a shape that is not a list of
  non-negative integers, ``__metadata__`` that is not a string map. A file named
  ``*.safetensors`` that is really a pickle or zip lands here or in 001; the orchestrator
  scans it by content as what it really is.
- SEC-SAFETENSORS-003 (HIGH): the data offsets do not describe the data region exactly
  once: an offset pair that is not ``[begin, end]`` with ``begin <= end``, a tensor whose
  byte size differs from ``prod(shape) * itemsize``, overlapping tensors (two names
  aliasing the same bytes), a gap between tensors, a region that does not start at 0, or
  offsets past the end of the file. The reference reader rejects each of these
  (``InvalidOffset``, ``TensorInvalidInfo``, ``MetadataIncompleteBuffer``).
- SEC-SAFETENSORS-004 (HIGH): bytes after the last tensor. Loaders ignore them, so they
  are the classic place to append a second file (a pickle, a zip) and make a polyglot that
  another loader opens. The evidence gives the tail's offset and size;
  ``trailing_region(path)`` returns the same span so the orchestrator can scan the tail as
  a pickle or container.

Only the header is read (at most ``max_header_bytes``); the file size comes from ``stat``,
so the scan takes milliseconds whatever the file size.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from gates.base import Finding
from gates.security import rules
from gates.security.common import Limits, Location

# Bits per element, as in the reference implementation (huggingface/safetensors Dtype).
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8,
    "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32,
    "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}  # fmt: skip

_PREFIX = 8


class _HeaderError(ValueError):
    """The header is not valid safetensors JSON (SEC-SAFETENSORS-002)."""


def looks_like_safetensors(head: bytes) -> bool:
    """8-byte little-endian length, then the JSON object's ``{`` at offset 8."""
    if len(head) < _PREFIX + 1:
        return False
    (n,) = struct.unpack("<Q", head[:_PREFIX])
    return n >= 2 and head[_PREFIX : _PREFIX + 1] == b"{"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _HeaderError(f"duplicate key {key!r} in header")
        out[key] = value
    return out


def _parse_header(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _HeaderError(f"header is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise _HeaderError(f"header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise _HeaderError(f"header is a JSON {type(header).__name__}, not an object")
    return header


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _validate_entries(header: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tensor entries, each checked for shape and dtype (raises _HeaderError)."""
    tensors: dict[str, dict[str, Any]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            if entry is not None and not (
                isinstance(entry, dict) and all(isinstance(v, str) for v in entry.values())
            ):
                raise _HeaderError("__metadata__ must map strings to strings")
            continue
        if not isinstance(entry, dict):
            raise _HeaderError(f"tensor {name!r}: entry is a {type(entry).__name__}")
        dtype, shape = entry.get("dtype"), entry.get("shape")
        if dtype not in DTYPE_BITS:
            raise _HeaderError(f"tensor {name!r}: unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
            raise _HeaderError(f"tensor {name!r}: shape {shape!r} is not a list of sizes")
        tensors[name] = entry
    return tensors


def _offset_problems(tensors: dict[str, dict[str, Any]], data_size: int) -> list[str]:
    """Why the offsets do not tile [0, data_size) exactly, or [] when they do."""
    problems: list[str] = []
    spans: list[tuple[int, int, str]] = []
    for name, entry in tensors.items():
        offsets = entry.get("data_offsets")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_uint, offsets))):
            problems.append(f"tensor {name!r}: data_offsets {offsets!r} is not [begin, end]")
            continue
        begin, end = offsets
        if begin > end:
            problems.append(f"tensor {name!r}: begin {begin} > end {end}")
            continue
        nbits = math.prod(entry["shape"]) * DTYPE_BITS[entry["dtype"]]
        if nbits % 8 or nbits // 8 != end - begin:
            problems.append(
                f"tensor {name!r}: {end - begin} bytes stored, shape {entry['shape']} of "
                f"{entry['dtype']} needs {nbits / 8:g}"
            )
        spans.append((begin, end, name))
    cursor = 0
    for begin, end, name in sorted(spans):
        if begin < cursor:
            problems.append(f"tensor {name!r} at [{begin}, {end}) overlaps the previous one")
        elif begin > cursor:
            problems.append(f"gap of {begin - cursor} bytes before tensor {name!r}")
        cursor = max(cursor, end)
    if cursor > data_size:
        problems.append(f"tensors end at {cursor}, past the {data_size}-byte data region")
    return problems


def _read_prefix(path: Path) -> tuple[int, int]:
    """(header length N, file size) from the first 8 bytes and stat."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        prefix = fh.read(_PREFIX)
    if len(prefix) < _PREFIX:
        raise _HeaderError(f"file has {len(prefix)} bytes, fewer than the 8-byte length")
    return struct.unpack("<Q", prefix)[0], size


def _read_header(path: Path, n: int) -> dict[str, Any]:
    with path.open("rb") as fh:
        fh.seek(_PREFIX)
        return _parse_header(fh.read(n))


def _tensor_end(tensors: dict[str, dict[str, Any]]) -> int:
    ends = [
        e["data_offsets"][1]
        for e in tensors.values()
        if isinstance(e.get("data_offsets"), list)
        and len(e["data_offsets"]) == 2
        and _is_uint(e["data_offsets"][1])
    ]
    return max(ends, default=0)


def trailing_region(path: Path, limits: Limits | None = None) -> tuple[int, int] | None:
    """(start, end) byte span after the last tensor, or None (no tail, or no valid header).

    The orchestrator scans this span as a pickle/container: it is where a polyglot hides.
    """
    limits = limits or Limits()
    try:
        n, size = _read_prefix(path)
        if n > limits.max_header_bytes or _PREFIX + n > size:
            return None
        tensors = _validate_entries(_read_header(path, n))
    except (_HeaderError, OSError):
        return None
    start = _PREFIX + n + _tensor_end(tensors)
    return (start, size) if start < size else None


def scan_safetensors(path: Path, where: Location, limits: Limits) -> list[Finding]:
    try:
        n, size = _read_prefix(path)
    except _HeaderError as exc:
        return [_invalid(where, str(exc))]
    if n > limits.max_header_bytes or _PREFIX + n > size:
        return [
            rules.SAFETENSORS_HEADER_LENGTH.finding(
                f"safetensors header length {n} bytes exceeds "
                + ("the scan limit" if n > limits.max_header_bytes else "the file size")
                + "; a reader would allocate it up front",
                where,
                {
                    "header_length": n,
                    "max_header_bytes": limits.max_header_bytes,
                    "file_size": size,
                    "offset": 0,
                },
            )
        ]
    try:
        tensors = _validate_entries(_read_header(path, n))
    except _HeaderError as exc:
        return [_invalid(where, str(exc), header_length=n)]

    data_start = _PREFIX + n
    data_size = size - data_start
    findings: list[Finding] = []
    problems = _offset_problems(tensors, data_size)
    if problems:
        findings.append(
            rules.SAFETENSORS_BAD_OFFSETS.finding(
                "safetensors data offsets do not cover the data region exactly once",
                where,
                {
                    "problems": problems[:20],
                    "problem_count": len(problems),
                    "data_start": data_start,
                    "data_size": data_size,
                    "tensor_count": len(tensors),
                },
            )
        )
    end = data_start + _tensor_end(tensors)
    if end < size:
        findings.append(
            rules.SAFETENSORS_TRAILING_DATA.finding(
                f"{size - end} bytes after the last tensor (polyglot tail; scanned separately)",
                where,
                {"tail_offset": end, "tail_size": size - end, "file_size": size},
            )
        )
    return findings


def _invalid(where: Location, why: str, **evidence: Any) -> Finding:
    return rules.SAFETENSORS_INVALID_HEADER.finding(
        f"not a valid safetensors header: {why}",
        where,
        {"reason": why, **evidence},
    )
