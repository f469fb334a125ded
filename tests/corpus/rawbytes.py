"""Hand assembly of pickle opcodes and archive bytes for the malicious corpus.

Why by hand: a sample made with `pickle.dumps(obj_with___reduce__)` only ever contains what
CPython's pickler emits, which is exactly the shape scanners were tuned on. Attackers write
opcodes directly (memo games, STACK_GLOBAL fed by computed strings, EXT codes, truncated
streams), and archives with bad CRCs, flag bits or duplicate names that `zipfile` refuses to
write. Nothing here imports, calls or loads the callables it names: they are only strings.
"""

from __future__ import annotations

import pickle as op
import struct
import types
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

# ---------------------------------------------------------------- pickle values


def uni(text: str) -> bytes:
    """A str via SHORT_BINUNICODE / BINUNICODE (protocol 1+ encodings)."""
    raw = text.encode("utf-8")
    if len(raw) < 256:
        return op.SHORT_BINUNICODE + bytes([len(raw)]) + raw
    return op.BINUNICODE + struct.pack("<I", len(raw)) + raw


def uni0(text: str) -> bytes:
    """A str via protocol-0 UNICODE (raw-unicode-escape, newline terminated)."""
    return op.UNICODE + text.encode("raw_unicode_escape") + b"\n"


def uni0_escaped(text: str) -> bytes:
    """A str via UNICODE with every character written as a \\uXXXX escape."""
    return op.UNICODE + "".join(f"\\u{ord(c):04x}" for c in text).encode() + b"\n"


def string0(text: str) -> bytes:
    """A str via protocol-0 STRING (a quoted Python 2 byte string, decoded as ASCII)."""
    return op.STRING + repr(text).encode("ascii") + b"\n"


def binstring(text: str) -> bytes:
    """A str via BINSTRING (4-byte length), a Python 2 byte string decoded as ASCII."""
    raw = text.encode("ascii")
    return op.BINSTRING + struct.pack("<i", len(raw)) + raw


def short_binstring(text: str) -> bytes:
    """A str via SHORT_BINSTRING (1-byte length), decoded as ASCII on load."""
    raw = text.encode("ascii")
    return op.SHORT_BINSTRING + bytes([len(raw)]) + raw


def binbytes(raw: bytes) -> bytes:
    """A bytes object via SHORT_BINBYTES / BINBYTES (protocol 3+)."""
    if len(raw) < 256:
        return op.SHORT_BINBYTES + bytes([len(raw)]) + raw
    return op.BINBYTES + struct.pack("<I", len(raw)) + raw


def integer(value: int) -> bytes:
    """An int with the smallest binary opcode that holds it."""
    if 0 <= value < 256:
        return op.BININT1 + bytes([value])
    if 0 <= value < 65536:
        return op.BININT2 + struct.pack("<H", value)
    if -(2**31) <= value < 2**31:
        return op.BININT + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return op.LONG1 + bytes([len(raw)]) + raw


def boolean(value: bool) -> bytes:
    """True or False (protocol 2 NEWTRUE/NEWFALSE)."""
    return op.NEWTRUE if value else op.NEWFALSE


def value(obj: object) -> bytes:
    """Plain data (None, bool, int, float, str, bytes, tuple, list, dict, code) as opcodes."""
    if obj is None:
        return op.NONE
    if isinstance(obj, bool):
        return boolean(obj)
    if isinstance(obj, int):
        return integer(obj)
    if isinstance(obj, float):
        return op.BINFLOAT + struct.pack(">d", obj)
    if isinstance(obj, str):
        return uni(obj)
    if isinstance(obj, bytes):
        return binbytes(obj)
    if isinstance(obj, tuple):
        return tup(*(value(x) for x in obj))
    if isinstance(obj, list):
        return lst(*(value(x) for x in obj))
    if isinstance(obj, dict):
        return dct([(value(k), value(v)) for k, v in obj.items()])
    if isinstance(obj, types.CodeType):
        return code_object(obj)
    raise TypeError(f"no opcode encoding for {type(obj).__name__}")


# ---------------------------------------------------------------- pickle structure


def tup(*items: bytes) -> bytes:
    """A tuple of already encoded items (TUPLE1/2/3 when short, MARK..TUPLE otherwise)."""
    if not items:
        return op.EMPTY_TUPLE
    if len(items) <= 3:
        return b"".join(items) + (op.TUPLE1, op.TUPLE2, op.TUPLE3)[len(items) - 1]
    return op.MARK + b"".join(items) + op.TUPLE


def tup0(*items: bytes) -> bytes:
    """A tuple with protocol-0 opcodes only (MARK ... TUPLE)."""
    return op.MARK + b"".join(items) + op.TUPLE


def lst(*items: bytes) -> bytes:
    """A list of already encoded items."""
    if not items:
        return op.EMPTY_LIST
    return op.EMPTY_LIST + op.MARK + b"".join(items) + op.APPENDS


def dct(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A dict of already encoded key/value pairs."""
    body = b"".join(k + v for k, v in pairs)
    return op.EMPTY_DICT + (op.MARK + body + op.SETITEMS if body else b"")


def glob(module: str, name: str) -> bytes:
    """GLOBAL: `module.name` written as two newline-terminated lines."""
    return op.GLOBAL + module.encode() + b"\n" + name.encode() + b"\n"


def stack_glob(module: str, name: str) -> bytes:
    """STACK_GLOBAL with both names pushed as SHORT_BINUNICODE just before it."""
    return uni(module) + uni(name) + op.STACK_GLOBAL


def call(fn: bytes, *args: bytes) -> bytes:
    """`fn(*args)` via REDUCE."""
    return fn + tup(*args) + op.REDUCE


def call0(fn: bytes, *args: bytes) -> bytes:
    """`fn(*args)` via REDUCE with a protocol-0 argument tuple."""
    return fn + tup0(*args) + op.REDUCE


def getattr_(obj: bytes, name: str) -> bytes:
    """`builtins.getattr(obj, name)`."""
    return call(glob("builtins", "getattr"), obj, uni(name))


def frame(body: bytes) -> bytes:
    """Wrap a protocol-4 body in one FRAME, as CPython's pickler does."""
    return op.FRAME + struct.pack("<Q", len(body)) + body


def wrap(body: bytes, proto: int = 2) -> bytes:
    """PROTO header (for protocol 2+) + body + STOP; protocol 0/1 streams have no header."""
    head = op.PROTO + bytes([proto]) if proto >= 2 else b""
    return head + body + op.STOP


def code_object(co: types.CodeType) -> bytes:
    """A code object rebuilt with `types.CodeType(...)`, field order of CPython 3.11.

    Cloudpickle emits the same call; the constants and names sit in the stream as plain
    values, which is what a scanner can read without loading.
    """
    fields = (
        co.co_argcount,
        co.co_posonlyargcount,
        co.co_kwonlyargcount,
        co.co_nlocals,
        co.co_stacksize,
        co.co_flags,
        co.co_code,
        co.co_consts,
        co.co_names,
        co.co_varnames,
        co.co_filename,
        co.co_name,
        co.co_qualname,
        co.co_firstlineno,
        co.co_linetable,
        co.co_exceptiontable,
        co.co_freevars,
        co.co_cellvars,
    )
    return call(glob("types", "CodeType"), *(value(f) for f in fields))


def function_code(source: str) -> types.CodeType:
    """The code object of the first function defined in `source` (compiled, never run)."""
    module = compile(source, "<corpus>", "exec")
    for const in module.co_consts:
        if isinstance(const, types.CodeType):
            return const
    raise ValueError("source defines no function")


# ---------------------------------------------------------------- zip / gzip by hand


@dataclass
class ZipMember:
    """One member of a hand-written zip; every header field can lie."""

    name: str
    data: bytes
    deflate: bool = False
    flags: int = 0
    crc: int | None = None
    compressed: bytes | None = None
    size: int | None = None


def raw_zip(members: list[ZipMember], prefix: bytes = b"") -> bytes:
    """A zip archive written field by field (local headers, central directory, EOCD).

    `zipfile` will not write bad CRCs, fake encryption bits or a prefix-shifted archive
    whose offsets count the prefix; this writer does whatever the member says.
    """
    out = bytearray(prefix)
    central = bytearray()
    for m in members:
        name = m.name.encode("utf-8")
        method = 8 if m.deflate or m.compressed is not None else 0
        if m.compressed is not None:
            body = m.compressed
        elif m.deflate:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            body = c.compress(m.data) + c.flush()
        else:
            body = m.data
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        size = len(m.data) if m.size is None else m.size
        offset = len(out)
        out += struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, m.flags, method, 0, 0x21, crc, len(body), size,
            len(name), 0,
        )  # fmt: skip
        out += name + body
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, m.flags, method, 0, 0x21, crc,
            len(body), size, len(name), 0, 0, 0, 0, 0o100644 << 16, offset,
        )  # fmt: skip
        central += name
    cd_offset = len(out)
    out += central
    n = len(members)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central), cd_offset, 0)
    return bytes(out)


def deflate_with_zero_tail(head: bytes, zero_chunks: int, chunk: int = 1 << 24) -> bytes:
    """Raw deflate of `head` + `zero_chunks * chunk` zero bytes, without compressing them all.

    Each full-flushed block of zeros is independent of what came before, so one compressed
    block is repeated: a 1 GiB bomb costs milliseconds to write.
    """
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    return first + block * zero_chunks + b"\x03\x00"  # empty final fixed-Huffman block


def crc_with_zero_tail(head: bytes, zero_chunks: int, chunk: int = 1 << 24) -> int:
    """CRC-32 of `head` followed by the zero tail of `deflate_with_zero_tail`."""
    crc = zlib.crc32(head)
    zeros = bytes(chunk)
    for _ in range(zero_chunks):
        crc = zlib.crc32(zeros, crc)
    return crc


def gzip_member(deflated: bytes, crc: int, size: int, name: bytes = b"") -> bytes:
    """A gzip member around an existing raw deflate stream (RFC 1952)."""
    flags = 0x08 if name else 0
    head = b"\x1f\x8b\x08" + bytes([flags]) + b"\x00\x00\x00\x00\x02\x03"
    head += name + b"\x00" if name else b""
    return head + deflated + struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)


# ---------------------------------------------------------------- numpy / protobuf


def npy_object_array(pickled: bytes) -> bytes:
    """A `.npy` v1.0 file of object dtype: the header, then a pickle, as numpy writes it."""
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    total = 10 + len(header) + 1
    header += b" " * ((64 - total % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + pickled


def varint(n: int) -> bytes:
    """A protobuf base-128 varint."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def pb_bytes(field: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (strings, bytes, sub-messages)."""
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def pb_int(field: int, n: int) -> bytes:
    """A varint protobuf field."""
    return varint(field << 3) + varint(n)
