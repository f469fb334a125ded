"""Walk an artifact and hand every blob to the engine its *content* calls for.

File names are never trusted: a pickle named `weights.bin`, a zip named `config.json`, a
protocol-0 pickle member with no magic byte inside a PyTorch archive and a gzip stream named
`model.joblib` are all recognised by their bytes. Containers are opened here, bounded
(depth, member count, decompressed size, compression ratio, time): zip (members read from
their local headers, so bad CRCs and flag-bit tricks change nothing), tar, gzip/zlib/bz2/
xz/lzma/lz4 streams, 7z (archives.py), and the legacy PyTorch stream of several pickles.
Exceeding a bound is a SEC-LIMIT-001 finding; a container that cannot be opened is
SEC-FILE-002; a file that claims a model format by its name but matches none by content is
SEC-FILE-003; an archive format that is recognised but not opened is SEC-FILE-004. A file
named like a pickle (`.pkl`, `.pickle`, `.joblib`, `.dill`, `.sav`) or starting with a
protocol-0 `GLOBAL module\nname\n` goes to the pickle machine even when the content sniff
says no, so a stream that breaks after naming `builtins.exec` is a finding, not text.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import struct
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gates.base import Finding, Severity
from gates.security import archives, secrets
from gates.security.callables import CallablePolicy
from gates.security.common import Limits, Location, ScanLimitExceeded, finding
from gates.security.decompress import inflate, stream_kind
from gates.security.formats import keras, numpy_files, onnx_format, safetensors, skops
from gates.security.formats import tensorflow as tf_format
from gates.security.pickle_vm import analyze_pickle, looks_like_pickle

HEAD = 64 * 1024
STRINGS_WINDOW = 1024 * 1024  # unknown binaries: secrets are looked for in the first MiB
TEXT_LIMIT = 10 * 1024 * 1024
SECRETS_BATCH = 32 * 1024 * 1024
# Names that promise a loadable model format; content that matches none of them is suspect.
MODEL_SUFFIXES = {
    ".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib", ".dill", ".npy", ".npz", ".h5",
    ".hdf5", ".keras", ".onnx", ".safetensors", ".skops", ".pb", ".sav", ".model", ".mar",
}  # fmt: skip
LEGACY_TORCH_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[2:-1]
ZIP_METHODS = {zipfile.ZIP_DEFLATED: "deflate-raw", zipfile.ZIP_BZIP2: "bz2"}
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib", ".dill", ".sav"})
_PROTOCOL0_GLOBAL = re.compile(rb"\Ac[A-Za-z_][\w.]*\n[A-Za-z_][\w.]*\n")


@dataclass
class WalkResult:
    findings: list[Finding] = field(default_factory=list)
    coverage: list[dict[str, Any]] = field(default_factory=list)
    code_objects: list[dict[str, Any]] = field(default_factory=list)


class Walker:
    def __init__(self, root: Path, limits: Limits, policy: CallablePolicy) -> None:
        self.root = root
        self.limits = limits
        self.policy = policy
        self.result = WalkResult()
        self._tmp = tempfile.TemporaryDirectory(prefix="gk-scan-")
        self._secret_items: list[tuple[Location, list[str], str]] = []
        self._secret_bytes = 0

    # -- entry points ---------------------------------------------------------------------

    def walk(self) -> WalkResult:
        try:
            for path in self._files():
                self._guarded(self._scan_file, path, Location(self._rel(path)))
            self._flush_secrets()
        finally:
            self._tmp.cleanup()
        return self.result

    def _files(self) -> Iterator[Path]:
        if self.root.is_file():
            yield self.root
            return
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames.sort()
            base = Path(dirpath)
            for name in [*sorted(filenames), *(d for d in dirnames if (base / d).is_symlink())]:
                path = base / name
                if path.is_symlink():
                    self._symlink(path)
                elif path.is_file():
                    yield path

    def _rel(self, path: Path) -> str:
        return path.name if self.root.is_file() else path.relative_to(self.root).as_posix()

    def _guarded(self, fn: Any, *args: Any) -> None:
        where: Location = args[1]
        try:
            fn(*args)
        except ScanLimitExceeded as exc:
            self._add(
                finding(
                    "SEC-LIMIT-001",
                    Severity.HIGH,
                    f"scan bound exceeded ({exc.limit}): {exc.detail}; refusing to call it safe",
                    where,
                    {"limit": exc.limit},
                )
            )
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, tarfile.TarError) as exc:
            self._add(
                finding(
                    "SEC-FILE-002",
                    Severity.HIGH,
                    f"could not read this container or file: {exc}",
                    where,
                    {"error": type(exc).__name__},
                )
            )

    def _add(self, item: Finding) -> None:
        self.result.findings.append(item)

    def _covered(self, where: Location, fmt: str) -> None:
        self.result.coverage.append({"file": where.file, "member": where.member, "format": fmt})

    def _symlink(self, path: Path) -> None:
        target = os.readlink(path)
        resolved = (path.parent / target).resolve()
        inside = self.root.is_dir() and resolved.is_relative_to(self.root.resolve())
        self._add(
            finding(
                "SEC-FILE-001",
                Severity.MEDIUM if inside else Severity.CRITICAL,
                f"symbolic link to {target}" + ("" if inside else " (outside the artifact)"),
                Location(self._rel(path)),
                {"target": target},
            )
        )

    # -- files on disk (large files are not read whole unless their content needs it) -----

    def _scan_file(self, path: Path, where: Location) -> None:
        self.limits.check_time()
        with path.open("rb") as fh:
            head = fh.read(HEAD)
        name = path.name
        if head.startswith(b"PK\x03\x04") or _has_zip_directory(path, head):
            with zipfile.ZipFile(path) as zf:
                self._walk_zip(zf, where, depth=1)
            return
        if head.startswith(archives.SEVEN_ZIP_MAGIC):
            self._walk_7z(path, where, depth=1)
            return
        if safetensors.looks_like_safetensors(head):
            self._covered(where, "safetensors")
            self.result.findings.extend(safetensors.scan_safetensors(path, where, self.limits))
            tail = safetensors.trailing_region(path)
            if tail:
                with path.open("rb") as fh:
                    fh.seek(tail[0])
                    self._scan_bytes(fh.read(tail[1] - tail[0]), where.child("<tail>"), 1, name)
            return
        if keras.looks_like_hdf5(head):
            self._covered(where, "hdf5")
            self.result.findings.extend(keras.scan_h5(path, where, self.policy, self.limits))
            return
        if name.endswith(".onnx") or onnx_format.looks_like_onnx(head):
            self._covered(where, "onnx")
            self.result.findings.extend(onnx_format.scan_onnx(path, where, path.parent))
            return
        size = path.stat().st_size
        if size > self.limits.max_member_bytes:
            raise ScanLimitExceeded("file_size", f"{size} bytes is over the in-memory bound")
        if _needs_whole(head, name) or size <= HEAD:
            self._scan_bytes(path.read_bytes(), where, 0, name)
        else:
            self._raw_data(head, where, name)

    # -- blobs in memory ------------------------------------------------------------------

    def _scan_bytes(self, data: bytes, where: Location, depth: int, name: str) -> None:
        self.limits.check_time()
        if depth > self.limits.max_depth:
            raise ScanLimitExceeded(
                "depth", f"containers nested deeper than {self.limits.max_depth}"
            )
        head = data[:HEAD]
        if head.startswith(b"PK\x03\x04") or (b"PK\x05\x06" in data[-65_557:] and _zip_ok(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                self._walk_zip(zf, where, depth + 1)
            return
        if _is_tar(head):
            with tarfile.open(fileobj=io.BytesIO(data)) as tf:
                self._walk_tar(tf, where, depth + 1)
            return
        if head.startswith(archives.SEVEN_ZIP_MAGIC):
            self._walk_7z(data, where, depth + 1)
            return
        kind = stream_kind(head)
        if kind and not looks_like_pickle(head):
            try:
                inner = inflate(kind, data, self.limits)
            except ValueError:
                inner = None  # not really a stream (e.g. tensor bytes that start like zlib)
            if inner is not None:
                self._covered(where, kind)
                self._scan_bytes(inner, where.child(f"<{kind}>"), depth + 1, name)
                return
        if numpy_files.looks_like_npy(head):
            self._covered(where, "npy")
            self.result.findings.extend(
                numpy_files.scan_npy(data, where, self.limits, self._pickle_findings)
            )
            return
        if looks_like_pickle(data) or _claims_pickle(data, name):
            self._pickle(data, where)
            return
        if safetensors.looks_like_safetensors(head) or keras.looks_like_hdf5(head):
            self._scan_file(self._spill(data, name), where)
            return
        if name in ("saved_model.pb", "keras_metadata.pb") or name.endswith(".pb"):
            self._covered(where, "tensorflow-protobuf")
            self.result.findings.extend(tf_format.scan_saved_model_pb(data, where))
            return
        if _is_text(head):
            if not self._unopened(head, where, name):
                self._text(data, where)
            return
        self._raw_data(head, where, name)

    def _unopened(self, head: bytes, where: Location, name: str) -> bool:
        """An archive format we recognise but do not open: a finding, never a pass."""
        kind = archives.unopened_kind(head, name)
        if kind is None:
            return False
        self._covered(where, f"unopened archive ({kind})")
        self._add(
            finding(
                "SEC-FILE-004",
                Severity.HIGH,
                f"{kind} archive or compressed data that the scanner does not open; its "
                "content cannot be checked",
                where,
                {"format": kind, "head_hex": head[:16].hex()},
            )
        )
        return True

    def _pickle_findings(self, data: bytes, where: Location) -> list[Finding]:
        before = len(self.result.findings)
        self._pickle(data, where)
        added = self.result.findings[before:]
        del self.result.findings[before:]
        return added

    def _pickle(self, data: bytes, where: Location) -> None:
        legacy_torch = data[2 : 2 + len(LEGACY_TORCH_MAGIC)] == LEGACY_TORCH_MAGIC
        report = analyze_pickle(data, where, self.limits, self.policy, allow_trailing=legacy_torch)
        self._covered(where, "pickle (legacy torch)" if legacy_torch else "pickle")
        self.result.findings.extend(report.findings)
        for code in report.code_objects:
            self.result.code_objects.append({**code, "file": where.file, "member": where.member})

    def _text(self, data: bytes, where: Location) -> None:
        self._covered(where, "text")
        if len(data) <= TEXT_LIMIT:
            lines = data.decode("utf-8", errors="replace").splitlines()
            self._queue_secrets(where, lines, "text", len(data))

    def _queue_secrets(self, where: Location, lines: list[str], kind: str, size: int) -> None:
        """Secrets are searched in batches: one detect-secrets pass per SECRETS_BATCH bytes."""
        self._secret_items.append((where, lines, kind))
        self._secret_bytes += size
        if self._secret_bytes >= SECRETS_BATCH:
            self._flush_secrets()

    def _flush_secrets(self) -> None:
        if self._secret_items:
            self.result.findings.extend(secrets.scan_batch(self._secret_items))
        self._secret_items, self._secret_bytes = [], 0

    def _raw_data(self, head: bytes, where: Location, name: str) -> None:
        """Bytes no loader interprets as code (tensor storage, weights): strings only."""
        if self._unopened(head, where, name):
            return
        self._covered(where, "raw data")
        strings = secrets.extract_strings(head[:STRINGS_WINDOW])
        self._queue_secrets(where, strings, "strings", sum(map(len, strings)))
        if Path(name).suffix.lower() in MODEL_SUFFIXES and not where.member:
            self._add(
                finding(
                    "SEC-FILE-003",
                    Severity.HIGH,
                    f"named like a model file ({Path(name).suffix}) but its content matches no "
                    "known model format; it cannot be checked",
                    where,
                    {"head_hex": head[:16].hex()},
                )
            )

    def _spill(self, data: bytes, name: str) -> Path:
        """Some parsers (h5py, safetensors header reader) want a path: a private temp file."""
        path = Path(self._tmp.name) / f"{len(os.listdir(self._tmp.name))}-{Path(name).name}"
        path.write_bytes(data)
        return path

    # -- containers -----------------------------------------------------------------------

    def _walk_zip(self, zf: zipfile.ZipFile, where: Location, depth: int) -> None:
        if depth > self.limits.max_depth:
            raise ScanLimitExceeded(
                "depth", f"containers nested deeper than {self.limits.max_depth}"
            )
        infos = zf.infolist()
        if len(infos) > self.limits.max_members:
            raise ScanLimitExceeded("members", f"{len(infos)} members in one zip")
        self._covered(where, "zip")
        self._zip_prefix(zf, infos, where, depth)
        names = {i.filename for i in infos}
        for info in infos:
            if info.is_dir():
                continue
            member = where.child(info.filename)
            self._guarded(self._zip_member, zf, member, info, depth, names)

    def _zip_prefix(
        self, zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], where: Location, depth: int
    ) -> None:
        """Bytes in front of the first member: a pickle there is what `pickle.load` and
        `torch.load(weights_only=False)` fallbacks read first (zip/pickle polyglots)."""
        start = min((i.header_offset for i in infos), default=0)
        if start <= 0:
            return
        if start > self.limits.max_member_bytes:
            raise ScanLimitExceeded("member_size", f"{start} bytes in front of a zip")
        fp = zf.fp
        assert fp is not None
        fp.seek(0)
        prefix = fp.read(start)
        self._guarded(self._scan_bytes, prefix, where.child("<prefix>"), depth, "prefix")

    def _zip_member(
        self,
        zf: zipfile.ZipFile,
        where: Location,
        info: zipfile.ZipInfo,
        depth: int,
        names: set[str],
    ) -> None:
        base = info.filename.rsplit("/", 1)[-1]
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size > STRINGS_WINDOW:
            head = _read_zip_member(zf, info, self.limits, HEAD)
            if not _needs_whole(head, base):
                self._raw_data(head, where, base)
                return
        data = _read_zip_member(zf, info, self.limits)
        if (
            base == "schema.json"
            and "schema.json" in names
            and skops.looks_like_skops(sorted(names), data)
        ):
            self._covered(where, "skops schema")
            self.result.findings.extend(skops.scan_skops_schema(data, where, self.policy))
            return
        if base == "config.json" and info.filename == "config.json" and "metadata.json" in names:
            self._keras_config(data, where)
            return
        self._scan_bytes(data, where, depth, base)

    def _keras_config(self, data: bytes, where: Location) -> None:
        self._covered(where, "keras config")
        try:
            config = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            self._text(data, where)
            return
        if isinstance(config, dict):
            self.result.findings.extend(keras.scan_keras_config(config, where, self.policy))

    def _walk_7z(self, source: Path | bytes, where: Location, depth: int) -> None:
        if depth > self.limits.max_depth:
            raise ScanLimitExceeded(
                "depth", f"containers nested deeper than {self.limits.max_depth}"
            )
        self._covered(where, "7z")
        try:
            members = archives.read_7z(source, self.limits)
        except archives.EncryptedArchive:
            self._add(
                finding(
                    "SEC-FILE-004",
                    Severity.HIGH,
                    "encrypted 7z archive; its content cannot be checked",
                    where,
                    {"format": "7z", "encrypted": True},
                )
            )
            return
        for name, data in members:
            base = name.rsplit("/", 1)[-1]
            self._guarded(self._scan_bytes, data, where.child(name), depth, base)

    def _walk_tar(self, tf: tarfile.TarFile, where: Location, depth: int) -> None:
        self._covered(where, "tar")
        count = 0
        for member in tf:
            count += 1
            if count > self.limits.max_members:
                raise ScanLimitExceeded("members", f"more than {count - 1} members in one tar")
            child = where.child(member.name)
            if member.issym() or member.islnk():
                self._add(
                    finding(
                        "SEC-FILE-001",
                        Severity.HIGH,
                        f"link inside a tar archive to {member.linkname}",
                        child,
                        {"target": member.linkname},
                    )
                )
                continue
            if not member.isfile():
                continue
            if member.size > self.limits.max_member_bytes:
                raise ScanLimitExceeded("member_size", f"tar member of {member.size} bytes")
            extracted = tf.extractfile(member)
            if extracted is not None:
                self.limits.add_decompressed(member.size)
                data = extracted.read()
                self._guarded(self._scan_bytes, data, child, depth, member.name.rsplit("/")[-1])


# -- helpers -------------------------------------------------------------------------------


def _needs_whole(head: bytes, name: str) -> bool:
    """Does this content need more than its head to be judged?"""
    return bool(
        head.startswith((b"PK\x03\x04", b"\x93NUMPY"))
        or stream_kind(head)
        or looks_like_pickle(head)
        or _is_tar(head)
        or _is_text(head)
        or name.endswith(".pb")
    )


def _claims_pickle(data: bytes, name: str) -> bool:
    """Named like a pickle, or opening with a protocol-0 GLOBAL: parse it as one even when the
    sniff says no (a stream that breaks after naming a callable is still a finding)."""
    if Path(name).suffix.lower() in PICKLE_SUFFIXES:
        return True
    return bool(_PROTOCOL0_GLOBAL.match(data[:512]))


def _is_tar(head: bytes) -> bool:
    return len(head) > 262 and head[257:262] == b"ustar"


def _is_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > len(head) - 4  # a multi-byte character cut at the window's end
    return True


def _has_zip_directory(path: Path, head: bytes) -> bool:
    """A zip with bytes in front of it (polyglot) is still a zip to Python's zipfile."""
    if head.startswith(b"PK\x03\x04"):
        return True
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def _zip_ok(data: bytes) -> bool:
    try:
        return zipfile.is_zipfile(io.BytesIO(data))
    except OSError:
        return False


_LOCAL_HEADER = struct.Struct("<4s5H3L2H")


def _read_zip_member(
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
