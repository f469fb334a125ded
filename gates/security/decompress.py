"""Bounded decompression of the stream formats models arrive in (joblib, tarballs, zips).

Recognised by magic bytes, never by file name: gzip, zlib, bz2, xz, raw lzma (joblib), lz4
frames when the `lz4` package is installed. Output is capped per stream and per scan (limits),
and a stream that inflates more than MAX_RATIO times past BOMB_FLOOR bytes is stopped as a
bomb: a scanner that tries to inflate a zip bomb has been beaten.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from typing import Any

from gates.security.common import Limits, ScanLimitExceeded

CHUNK = 1024 * 1024
BOMB_FLOOR = 64 * 1024 * 1024
MAX_RATIO = 1000


def stream_kind(head: bytes) -> str | None:
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh":
        return "bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[:3] == b"\x5d\x00\x00":
        return "lzma"
    if head[:4] == b"\x04\x22\x4d\x18":
        return "lz4"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        return "zlib"
    return None


def _decompressor(kind: str) -> Any:
    if kind == "gzip":
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    if kind == "zlib":
        return zlib.decompressobj()
    if kind == "deflate-raw":
        return zlib.decompressobj(wbits=-zlib.MAX_WBITS)
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    if kind in ("xz", "lzma"):
        return lzma.LZMADecompressor()
    if kind == "lz4":
        import lz4.frame  # optional: joblib's lz4 compressor needs the same package

        return lz4.frame.LZ4FrameDecompressor()
    raise ValueError(f"unknown stream kind {kind}")


def inflate(kind: str, data: bytes, limits: Limits, cap: int | None = None) -> bytes:
    """Decompress `data` (concatenated members too, for gzip/bz2/xz) within bounds.

    Raises ScanLimitExceeded for bombs and oversize output, ValueError for corrupt input.
    Bytes after the last complete stream are ignored, as the loaders ignore them.
    """
    cap = min(cap or limits.max_member_bytes, limits.max_member_bytes)
    out = bytearray()
    rest = data
    try:
        while rest:
            decoder = _decompressor(kind)
            if isinstance(decoder, _ZLIB_TYPE):
                buf = rest
                while True:
                    chunk = decoder.decompress(buf, CHUNK)
                    buf = decoder.unconsumed_tail
                    consumed = len(data) - len(buf)
                    _grow(out, chunk, consumed, cap, limits)
                    if decoder.eof or not (buf or chunk):
                        break
            else:
                chunk = decoder.decompress(rest, max_length=CHUNK)
                _grow(out, chunk, len(data), cap, limits)
                while not decoder.eof and not decoder.needs_input:
                    _grow(out, decoder.decompress(b"", max_length=CHUNK), len(data), cap, limits)
            if not decoder.eof:
                if not out:
                    raise ValueError(f"truncated {kind} stream")
                break  # truncated: keep what we got, the caller scans it
            rest = decoder.unused_data
            if kind not in ("gzip", "bz2", "xz") or stream_kind(rest[:8]) != kind:
                break
    except (zlib.error, OSError, lzma.LZMAError, EOFError, RuntimeError) as exc:
        raise ValueError(f"corrupt {kind} stream: {exc}") from exc
    return bytes(out)


_ZLIB_TYPE = type(zlib.decompressobj())


def _grow(out: bytearray, chunk: bytes, consumed: int, cap: int, limits: Limits) -> None:
    limits.check_time()
    out += chunk
    limits.add_decompressed(len(chunk))
    if len(out) > cap:
        raise ScanLimitExceeded("member_size", f"decompressed output over {cap} bytes")
    if len(out) > BOMB_FLOOR and len(out) > MAX_RATIO * max(consumed, 1):
        raise ScanLimitExceeded(
            "compression_ratio", f"{len(out)} bytes from {consumed}: ratio over {MAX_RATIO}"
        )
