"""Containers the walker opens: zip, tar, 7z and compressed streams, each a FormatScanner.

Every member goes back to the walker (`Walk.scan`), bounded: nesting depth, members per
container, decompressed size and ratio (`Limits`). Zip members are read from their local
headers, as PyTorch's reader does, so bad CRCs and flag-bit tricks change nothing; the bytes in
front of the first member (a zip/pickle polyglot) are scanned too. 7z is opened with py7zr
(`archives.py`), an encrypted one is SEC-FILE-004. A tar link member is SEC-FILE-001.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from gates.base import Finding
from gates.security import archives, rules
from gates.security.common import Limits, Location, ScanLimitExceeded
from gates.security.decompress import inflate, stream_kind
from gates.security.format_scanner import (
    HEAD,
    STRINGS_WINDOW,
    Blob,
    NotThisFormat,
    Stage,
    Walk,
    is_tar,
    needs_whole,
)
from gates.security.pickle_vm import looks_like_pickle

ZIP_METHODS = {zipfile.ZIP_DEFLATED: "deflate-raw", zipfile.ZIP_BZIP2: "bz2"}
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_BOTH = frozenset({Stage.ON_DISK, Stage.IN_MEMORY})


def _check_depth(depth: int, limits: Limits) -> None:
    if depth > limits.max_depth:
        raise ScanLimitExceeded("depth", f"containers nested deeper than {limits.max_depth}")


class ZipScanner:
    name = "zip"
    stages = _BOTH

    def sniff(self, blob: Blob) -> bool:
        if blob.head.startswith(b"PK\x03\x04"):
            return True
        if blob.data is not None:
            return b"PK\x05\x06" in blob.data[-65_557:] and _is_zip(io.BytesIO(blob.data))
        # a zip with bytes in front of it (polyglot) is still a zip to Python's zipfile
        return blob.path is not None and _is_zip(blob.path)

    def scan(self, blob: Blob, walk: Walk) -> Iterable[Finding]:
        source = io.BytesIO(blob.data) if blob.data is not None else blob.path
        assert source is not None
        with zipfile.ZipFile(source) as zf:
            self._walk(zf, blob.where, blob.depth + 1, walk)
        return ()

    def _walk(self, zf: zipfile.ZipFile, where: Location, depth: int, walk: Walk) -> None:
        _check_depth(depth, walk.limits)
        infos = zf.infolist()
        if len(infos) > walk.limits.max_members:
            raise ScanLimitExceeded("members", f"{len(infos)} members in one zip")
        walk.covered(where, "zip")
        self._prefix(zf, infos, where, depth, walk)
        names = frozenset(i.filename for i in infos)
        for info in infos:
            if not info.is_dir():
                member = where.child(info.filename)
                walk.guarded(member, self._member, zf, member, info, depth, names, walk)

    def _prefix(
        self,
        zf: zipfile.ZipFile,
        infos: list[zipfile.ZipInfo],
        where: Location,
        depth: int,
        walk: Walk,
    ) -> None:
        """Bytes in front of the first member: a pickle there is what `pickle.load` and
        `torch.load(weights_only=False)` fallbacks read first (zip/pickle polyglots)."""
        start = min((i.header_offset for i in infos), default=0)
        if start <= 0:
            return
        if start > walk.limits.max_member_bytes:
            raise ScanLimitExceeded("member_size", f"{start} bytes in front of a zip")
        fp = zf.fp
        assert fp is not None
        fp.seek(0)
        prefix = Blob.in_memory(fp.read(start), where.child("<prefix>"), "prefix", depth)
        walk.guarded(prefix.where, walk.scan, prefix)

    def _member(
        self,
        zf: zipfile.ZipFile,
        where: Location,
        info: zipfile.ZipInfo,
        depth: int,
        names: frozenset[str],
        walk: Walk,
    ) -> None:
        base = info.filename.rsplit("/", 1)[-1]
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size > STRINGS_WINDOW:
            head = read_zip_member(zf, info, walk.limits, HEAD)
            if not needs_whole(head, base):
                walk.scan(Blob.head_only(head, where, base, depth))
                return
        data = read_zip_member(zf, info, walk.limits)
        walk.scan(
            Blob.in_memory(data, where, base, depth, siblings=names, member_path=info.filename)
        )


class TarScanner:
    name = "tar"
    stages = frozenset({Stage.IN_MEMORY})

    def sniff(self, blob: Blob) -> bool:
        return is_tar(blob.head)

    def scan(self, blob: Blob, walk: Walk) -> Iterator[Finding]:
        assert blob.data is not None
        with tarfile.open(fileobj=io.BytesIO(blob.data)) as tf:
            yield from self._walk(tf, blob.where, blob.depth + 1, walk)

    def _walk(
        self, tf: tarfile.TarFile, where: Location, depth: int, walk: Walk
    ) -> Iterator[Finding]:
        walk.covered(where, "tar")
        count = 0
        for member in tf:
            count += 1
            if count > walk.limits.max_members:
                raise ScanLimitExceeded("members", f"more than {count - 1} members in one tar")
            child = where.child(member.name)
            if member.issym() or member.islnk():
                yield rules.FILE_LINK.finding(
                    f"link inside a tar archive to {member.linkname}",
                    child,
                    {"target": member.linkname},
                )
                continue
            if not member.isfile():
                continue
            if member.size > walk.limits.max_member_bytes:
                raise ScanLimitExceeded("member_size", f"tar member of {member.size} bytes")
            extracted = tf.extractfile(member)
            if extracted is not None:
                walk.limits.add_decompressed(member.size)
                nested = Blob.in_memory(extracted.read(), child, member.name.rsplit("/")[-1], depth)
                walk.guarded(child, walk.scan, nested)


class SevenZipScanner:
    name = "7z"
    stages = _BOTH

    def sniff(self, blob: Blob) -> bool:
        return blob.head.startswith(archives.SEVEN_ZIP_MAGIC)

    def scan(self, blob: Blob, walk: Walk) -> Iterator[Finding]:
        depth = blob.depth + 1
        _check_depth(depth, walk.limits)
        walk.covered(blob.where, "7z")
        try:
            members = archives.read_7z(blob.source, walk.limits)
        except archives.EncryptedArchive:
            yield rules.FILE_UNOPENED_ARCHIVE.finding(
                "encrypted 7z archive; its content cannot be checked",
                blob.where,
                {"format": "7z", "encrypted": True},
            )
            return
        for name, data in members:
            child = Blob.in_memory(data, blob.where.child(name), name.rsplit("/", 1)[-1], depth)
            walk.guarded(child.where, walk.scan, child)


class CompressedStreamScanner:
    """gzip, zlib, bz2, xz/lzma and lz4 streams (`decompress.py`), inflated within bounds."""

    name = "compressed stream"
    stages = frozenset({Stage.IN_MEMORY})

    def sniff(self, blob: Blob) -> bool:
        return bool(stream_kind(blob.head)) and not looks_like_pickle(blob.head)

    def scan(self, blob: Blob, walk: Walk) -> Iterable[Finding]:
        kind = stream_kind(blob.head)
        assert kind is not None and blob.data is not None
        try:
            inner = inflate(kind, blob.data, walk.limits)
        except ValueError:
            # not really a stream (e.g. tensor bytes that start like zlib)
            raise NotThisFormat(kind) from None
        walk.covered(blob.where, kind)
        walk.scan(Blob.in_memory(inner, blob.where.child(f"<{kind}>"), blob.name, blob.depth + 1))
        return ()


def _is_zip(source: Path | io.BytesIO) -> bool:
    try:
        return zipfile.is_zipfile(source)
    except OSError:
        return False


def read_zip_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits, head_only: int | None = None
) -> bytes:
    """Read a member from its local header, as PyTorch's reader does: CRCs and the
    encryption flag are not consulted, so flipping them hides nothing from us."""
    fp = zf.fp
    assert fp is not None
    fp.seek(info.header_offset)
    header = fp.read(_LOCAL_HEADER.size)
    if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
        raise ValueError(f"member {info.filename!r}: no local header at its offset")
    fields = _LOCAL_HEADER.unpack(header)
    name_len, extra_len = fields[9], fields[10]
    fp.seek(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)
    size = info.compress_size
    if size > limits.max_member_bytes:
        raise ScanLimitExceeded("member_size", f"member of {size} compressed bytes")
    raw = fp.read(min(size, head_only) if head_only else size)
    if info.compress_type == zipfile.ZIP_STORED:
        limits.add_decompressed(len(raw))
        return raw
    kind = ZIP_METHODS.get(info.compress_type)
    if kind is None:
        if info.compress_type == zipfile.ZIP_LZMA:
            with zf.open(info) as stream:
                return stream.read(limits.max_member_bytes)
        raise ValueError(f"member {info.filename!r}: compression method {info.compress_type}")
    return inflate(kind, raw, limits)
