"""Archive formats beyond zip and tar: 7z is opened; any other one we recognise is a finding.

7z archives are opened with py7zr (what picklescan uses), under the walker's bounds: member
count, each member's declared size and the scan's decompressed total are checked from the
archive's headers before anything is extracted, and extraction writes into buffers capped at
the member bound. An encrypted 7z cannot be checked and is a finding.

An archive or compressed format that the scanner recognises but does not open (rar, zstd,
cab, xar, compress, lzip, lzop, arj, ar, cpio, squashfs, wim, zpaq), or a file named like an
archive whose content matches nothing the scanner knows, is SEC-FILE-004 HIGH: what cannot be
looked into is never called safe. (A loader could still read such a file: joblib opens zstd
through its optional compressors, and custom model code can open anything it ships.)

Rules (stable ids):

- SEC-FILE-004 HIGH: archive or compressed format the scanner does not open (or an
  encrypted 7z); its content cannot be checked.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from gates.security.common import Limits, ScanLimitExceeded

SEVEN_ZIP_MAGIC = b"7z\xbc\xaf\x27\x1c"
UNOPENED_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"Rar!\x1a\x07", 0, "rar"),
    (b"\x28\xb5\x2f\xfd", 0, "zstd"),
    (b"xar!", 0, "xar"),
    (b"MSCF\x00\x00\x00\x00", 0, "cab"),
    (b"\x1f\x9d", 0, "compress (.Z)"),
    (b"\x1f\xa0", 0, "compress (lzh)"),
    (b"LZIP", 0, "lzip"),
    (b"\x89LZO\x00\r\n\x1a\n", 0, "lzop"),
    (b"\x60\xea", 0, "arj"),
    (b"!<arch>\n", 0, "ar"),
    (b"hsqs", 0, "squashfs"),
    (b"070701", 0, "cpio"),
    (b"070702", 0, "cpio"),
    (b"070707", 0, "cpio"),
    (b"MSWIM\x00\x00\x00", 0, "wim"),
    (b"zPQ", 0, "zpaq"),
    (b"-lh", 2, "lha"),
)
ARCHIVE_SUFFIXES = frozenset(
    {".7z", ".rar", ".zst", ".zstd", ".lz", ".lzo", ".cab", ".arj", ".cpio", ".z", ".xar",
     ".lzh", ".lha", ".tzst", ".wim", ".squashfs", ".zpaq", ".ar"}
)  # fmt: skip


class ArchiveError(ValueError):
    """The archive could not be read (corrupt, unsupported method): SEC-FILE-002."""


class EncryptedArchive(Exception):
    """A password-protected archive: its members cannot be checked."""


def unopened_kind(head: bytes, name: str) -> str | None:
    """The archive format of `head` that the scanner does not open, if it is one."""
    for magic, offset, kind in UNOPENED_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    suffix = Path(name).suffix.lower()
    if suffix in ARCHIVE_SUFFIXES:
        return f"{suffix} file of unknown content"
    return None


def read_7z(source: Path | bytes, limits: Limits) -> list[tuple[str, bytes]]:
    """Every file member of a 7z archive as (name, bytes), bounded before extraction."""
    import py7zr

    handle = source if isinstance(source, Path) else io.BytesIO(source)
    try:
        with py7zr.SevenZipFile(handle) as archive:
            return _extract(archive, limits)
    except (ScanLimitExceeded, EncryptedArchive, ArchiveError):
        raise
    except py7zr.exceptions.PasswordRequired as exc:  # encrypted headers fail at open
        raise EncryptedArchive("the 7z archive is encrypted") from exc
    except Exception as exc:  # py7zr raises many types for corrupt or unsupported input
        detail = str(exc)[:200]
        raise ArchiveError(f"7z archive could not be read: {type(exc).__name__}: {detail}") from exc


def _extract(archive: Any, limits: Limits) -> list[tuple[str, bytes]]:
    from py7zr.io import BytesIOFactory

    if archive.needs_password():
        raise EncryptedArchive("the 7z archive is encrypted")
    infos = archive.list()
    if len(infos) > limits.max_members:
        raise ScanLimitExceeded("members", f"{len(infos)} members in one 7z")
    files = [i for i in infos if not i.is_directory]
    for info in files:
        if info.uncompressed > limits.max_member_bytes:
            raise ScanLimitExceeded("member_size", f"7z member of {info.uncompressed} bytes")
    limits.add_decompressed(sum(int(i.uncompressed) for i in files))
    limits.check_time()
    factory = BytesIOFactory(limits.max_member_bytes + 1)
    archive.extractall(factory=factory)
    members = []
    for info in files:
        product = factory.products.get(info.filename)
        if product is None:
            raise ArchiveError(f"7z member {info.filename!r} was listed but not extracted")
        product.seek(0)
        data = product.read()
        if len(data) > limits.max_member_bytes:
            raise ScanLimitExceeded("member_size", f"7z member {info.filename!r} grew past it")
        members.append((info.filename, data))
    return members
