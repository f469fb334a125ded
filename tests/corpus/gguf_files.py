"""GGUF files built for the tests and the bench: a real header, metadata and a tiny tensor.

Written by hand from the GGUF layout (what llama.cpp's gguf-py writes): no model is
downloaded, and the malformed ones are exactly as malformed as each test says.
"""

from __future__ import annotations

import struct
from pathlib import Path

STRING, ARRAY, UINT32, FLOAT32 = 8, 9, 4, 6


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def _kv_string(key: str, value: str) -> bytes:
    return _string(key) + struct.pack("<I", STRING) + _string(value)


def _kv_u32(key: str, value: int) -> bytes:
    return _string(key) + struct.pack("<I", UINT32) + struct.pack("<I", value)


def _kv_string_array(key: str, values: list[str]) -> bytes:
    head = _string(key) + struct.pack("<I", ARRAY) + struct.pack("<IQ", STRING, len(values))
    return head + b"".join(_string(v) for v in values)


def gguf_bytes(chat_template: str | None, *, named: dict[str, str] | None = None) -> bytes:
    """A v3 GGUF with general metadata, a 4-token vocabulary, the chat template(s) and one
    2x2 float32 tensor."""
    kvs = [
        _kv_string("general.architecture", "llama"),
        _kv_string("general.name", "tiny-test-model"),
        _kv_u32("llama.context_length", 2048),
        _kv_string_array("tokenizer.ggml.tokens", ["<s>", "</s>", "hello", "world"]),
    ]
    if chat_template is not None:
        kvs.append(_kv_string("tokenizer.chat_template", chat_template))
    for name, template in (named or {}).items():
        kvs.append(_kv_string(f"tokenizer.chat_template.{name}", template))
    header = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kvs)) + b"".join(kvs)
    tensor_info = _string("tok_embd.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 2, 2)
    tensor_info += struct.pack("<IQ", 0, 0)  # type F32, offset 0
    body = header + tensor_info
    body += b"\0" * (-len(body) % 32)  # alignment
    return body + struct.pack("<4f", 0.1, 0.2, 0.3, 0.4)


def write_gguf(path: Path, chat_template: str | None, **kwargs: dict[str, str]) -> Path:
    path.write_bytes(gguf_bytes(chat_template, **kwargs))
    return path


def oversized_gguf() -> bytes:
    """Claims 2^40 metadata keys: a parser that trusts the count allocates or loops forever."""
    return b"GGUF" + struct.pack("<IQQ", 3, 0, 2**40) + _kv_u32("general.alignment", 32)


def huge_string_gguf() -> bytes:
    """A chat template that claims 2^50 bytes in a 100-byte file."""
    key = _string("tokenizer.chat_template") + struct.pack("<I", STRING)
    return b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + key + struct.pack("<Q", 2**50) + b"x" * 64
