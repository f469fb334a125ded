"""GGUF (llama.cpp's model file): the header and metadata, read with bounds; tensors never.

Layout (little-endian): magic `GGUF`, version u32 (2 or 3), tensor count u64, metadata count
u64, then the metadata: key (u64 length + UTF-8), value type u32, value. Written by hand
(the `gguf` package would be one more dependency for ~100 lines, and it memory-maps the
whole file and trusts its counts): every count and length is checked against the limits
and against what is left of the file before anything is read, so a header that claims a
2^60-element array is a finding, not an allocation.

The metadata's chat templates (`tokenizer.chat_template`, `tokenizer.chat_template.<name>`)
go to the chat-template judge; a malformed header is SEC-GGUF-001, never a pass.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gates.base import Finding
from gates.security import rules
from gates.security.common import Location
from gates.security.formats.chat_template import TemplateSource, judge_template

MAGIC = b"GGUF"
MAX_KEYS = 65_536
MAX_KEY_BYTES = 65_536
MAX_STRING_BYTES = 16 * 1024**2  # a chat template is KBs; a whole vocabulary is an array
MAX_ARRAY_ITEMS = 50_000_000  # vocabularies run to ~260k tokens, merges to ~500k
MAX_METADATA_BYTES = 1024**3
MAX_TENSORS = 10_000_000
MAX_NESTING = 2
KEEP_STRING_CHARS = 200  # what of an ordinary string value the evidence keeps

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}  # fmt: skip
STRING, ARRAY = 8, 9


class GgufError(Exception):
    pass


@dataclass
class GgufHeader:
    version: int
    tensor_count: int
    metadata: dict[str, Any]  # scalars and short strings; arrays as their length
    templates: list[TemplateSource]


def looks_like_gguf(head: bytes) -> bool:
    return head[:4] == MAGIC


class _Reader:
    def __init__(self, handle: IO[bytes], size: int) -> None:
        self.handle, self.size, self.read_bytes = handle, size, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.handle.tell() + n > self.size:
            raise GgufError(f"{what} runs past the end of the file (truncated header)")
        self.read_bytes += n
        if self.read_bytes > MAX_METADATA_BYTES:
            raise GgufError(f"metadata over the {MAX_METADATA_BYTES}-byte limit")
        data = self.handle.read(n)
        if len(data) != n:
            raise GgufError(f"{what} runs past the end of the file (truncated header)")
        return data

    def skip(self, n: int, what: str) -> None:
        if n < 0 or self.handle.tell() + n > self.size:
            raise GgufError(f"{what} runs past the end of the file (truncated header)")
        self.handle.seek(n, 1)

    def u32(self, what: str) -> int:
        return int(struct.unpack("<I", self.take(4, what))[0])

    def u64(self, what: str) -> int:
        return int(struct.unpack("<Q", self.take(8, what))[0])

    def string(self, what: str, limit: int, keep: bool = True) -> str | None:
        length = self.u64(f"length of {what}")
        if length > limit:
            raise GgufError(f"{what} claims {length} bytes, over the {limit}-byte limit")
        if not keep:
            self.skip(length, what)
            return None
        try:
            return self.take(length, what).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GgufError(f"{what} is not UTF-8") from exc


def read_header(path: Path) -> GgufHeader:
    size = path.stat().st_size
    with path.open("rb") as handle:
        reader = _Reader(handle, size)
        if reader.take(4, "magic") != MAGIC:
            raise GgufError("no GGUF magic")
        version = reader.u32("version")
        if version not in (2, 3):
            raise GgufError(f"GGUF version {version} (only 2 and 3 are read)")
        tensors = reader.u64("tensor count")
        keys = reader.u64("metadata count")
        if tensors > MAX_TENSORS:
            raise GgufError(f"{tensors} tensors claimed, over the {MAX_TENSORS} limit")
        if keys > MAX_KEYS:
            raise GgufError(f"{keys} metadata keys claimed, over the {MAX_KEYS} limit")
        metadata: dict[str, Any] = {}
        templates: list[TemplateSource] = []
        for index in range(keys):
            key = reader.string(f"key {index}", MAX_KEY_BYTES) or ""
            kind = reader.u32(f"type of {key!r}")
            is_template = key == "tokenizer.chat_template" or key.startswith(
                "tokenizer.chat_template."
            )
            value = _value(reader, kind, key, 0, keep=True)
            if is_template:
                if not isinstance(value, str):
                    raise GgufError(f"{key} is not a string")
                templates.append(TemplateSource(key, value))
                metadata[key] = f"<{len(value)} characters>"
            elif isinstance(value, str):
                metadata[key] = value[:KEEP_STRING_CHARS]
            else:
                metadata[key] = value
        return GgufHeader(version, tensors, metadata, templates)


def _value(reader: _Reader, kind: int, key: str, depth: int, *, keep: bool) -> Any:
    if kind in _SCALARS:
        fmt = _SCALARS[kind]
        return struct.unpack(fmt, reader.take(struct.calcsize(fmt), key))[0]
    if kind == STRING:
        return reader.string(f"value of {key!r}", MAX_STRING_BYTES, keep=keep)
    if kind == ARRAY:
        if depth >= MAX_NESTING:
            raise GgufError(f"{key!r}: arrays nested deeper than {MAX_NESTING}")
        item_kind = reader.u32(f"item type of {key!r}")
        count = reader.u64(f"length of {key!r}")
        if count > MAX_ARRAY_ITEMS:
            raise GgufError(f"{key!r} claims {count} items, over the {MAX_ARRAY_ITEMS} limit")
        if item_kind in _SCALARS:  # fixed size: bounded by the file before it is skipped
            reader.skip(count * struct.calcsize(_SCALARS[item_kind]), f"items of {key!r}")
        else:
            for _ in range(count):
                _value(reader, item_kind, key, depth + 1, keep=False)
        return f"<array of {count}>"
    raise GgufError(f"{key!r} has unknown value type {kind}")


def scan_gguf(path: Path, where: Location) -> Iterator[Finding]:
    try:
        header = read_header(path)
    except (GgufError, OSError, struct.error) as exc:
        yield rules.GGUF_MALFORMED.finding(
            f"GGUF header: {exc}; the metadata and any chat template in it were not checked",
            where,
            {"error": str(exc)[:300]},
        )
        return
    for template in header.templates:
        yield from judge_template(template, where)
