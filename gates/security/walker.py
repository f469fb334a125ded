"""Walk an artifact and hand every blob to the engine its *content* calls for.

File names are never trusted: a pickle named `weights.bin`, a zip named `config.json`, a
protocol-0 pickle member with no magic byte inside a PyTorch archive and a gzip stream named
`model.joblib` are all recognised by their bytes. Which engine gets a blob is decided by the
ordered registry of format scanners (`scanners.py`, protocol in `format_scanner.py`): the
first whose sniff claims it scans it. Containers (`containers.py`: zip, tar, 7z, compressed
streams) hand their members back here, bounded (depth, member count, decompressed size,
compression ratio, time).

Exceeding a bound is a SEC-LIMIT-001 finding; a container that cannot be opened is
SEC-FILE-002; a symbolic link is SEC-FILE-001 (CRITICAL when it leaves the artifact). Either
ends the scan of that file or member only: the walk goes on with the next one. Secrets in text
and in the strings of binaries are searched in batches (detect-secrets costs per call).
"""

from __future__ import annotations

import os
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec

from gates.base import Finding, Severity
from gates.security import rules, secrets
from gates.security.callables import CallablePolicy
from gates.security.common import Limits, Location, ScanLimitExceeded
from gates.security.format_scanner import HEAD, Blob, FormatScanner, NotThisFormat
from gates.security.scanners import REGISTRY

SECRETS_BATCH = 32 * 1024 * 1024

P = ParamSpec("P")


@dataclass
class WalkResult:
    findings: list[Finding] = field(default_factory=list)
    coverage: list[dict[str, Any]] = field(default_factory=list)
    code_objects: list[dict[str, Any]] = field(default_factory=list)


class Walker:
    """One walk over one artifact: the files under the root, each dispatched by content."""

    def __init__(
        self,
        root: Path,
        limits: Limits,
        policy: CallablePolicy,
        scanners: Sequence[FormatScanner] = REGISTRY,
    ) -> None:
        self.root = root
        self.limits = limits
        self.policy = policy
        self.scanners = scanners
        self.result = WalkResult()
        self._tmp = tempfile.TemporaryDirectory(prefix="gk-scan-")
        self._secret_items: list[tuple[Location, list[str], str]] = []
        self._secret_bytes = 0

    def walk(self) -> WalkResult:
        try:
            for path in self._files():
                where = Location(self._rel(path))
                self.guarded(where, self._scan_file, path, where)
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

    def _symlink(self, path: Path) -> None:
        target = os.readlink(path)
        resolved = (path.parent / target).resolve()
        inside = self.root.is_dir() and resolved.is_relative_to(self.root.resolve())
        self.result.findings.append(
            rules.FILE_LINK.finding(
                f"symbolic link to {target}" + ("" if inside else " (outside the artifact)"),
                Location(self._rel(path)),
                {"target": target},
                severity=Severity.MEDIUM if inside else Severity.CRITICAL,
            )
        )

    def _scan_file(self, path: Path, where: Location) -> None:
        with path.open("rb") as fh:
            head = fh.read(HEAD)
        self.scan(Blob.on_disk(path, head, where))

    # -- what the scanners call (format_scanner.Walk) ------------------------------------

    def scan(self, blob: Blob) -> None:
        """Hand `blob` to the first scanner of the registry that claims it."""
        self.limits.check_time()
        if blob.depth > self.limits.max_depth:
            raise ScanLimitExceeded(
                "depth", f"containers nested deeper than {self.limits.max_depth}"
            )
        stage = blob.stage
        for scanner in self.scanners:
            if stage not in scanner.stages or not scanner.sniff(blob):
                continue
            try:
                # one by one: a scan's findings interleave with those of the blobs nested in
                # it, and the ones made before a bound is hit are kept
                for item in scanner.scan(blob, self):
                    self.result.findings.append(item)
            except NotThisFormat:
                continue
            return
        raise AssertionError(f"no scanner claims a {stage.value} blob")  # the fallback does

    def guarded(
        self, where: Location, action: Callable[P, object], /, *args: P.args, **kwargs: P.kwargs
    ) -> None:
        try:
            action(*args, **kwargs)
        except ScanLimitExceeded as exc:
            self.result.findings.append(
                rules.SCAN_LIMIT.finding(
                    f"scan bound exceeded ({exc.limit}): {exc.detail}; refusing to call it safe",
                    where,
                    {"limit": exc.limit},
                )
            )
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, tarfile.TarError) as exc:
            self.result.findings.append(
                rules.FILE_UNREADABLE.finding(
                    f"could not read this container or file: {exc}",
                    where,
                    {"error": type(exc).__name__},
                )
            )

    def covered(self, where: Location, fmt: str) -> None:
        self.result.coverage.append({"file": where.file, "member": where.member, "format": fmt})

    def spill(self, blob: Blob) -> Path:
        """A path for parsers that want one (h5py, the safetensors reader): the file itself,
        or the bytes written to a private temp file."""
        if blob.path is not None:
            return blob.path
        assert blob.data is not None
        path = Path(self._tmp.name) / f"{len(os.listdir(self._tmp.name))}-{Path(blob.name).name}"
        path.write_bytes(blob.data)
        return path

    def queue_secrets(self, where: Location, lines: list[str], kind: str, size: int) -> None:
        """Secrets are searched in batches: one detect-secrets pass per SECRETS_BATCH bytes."""
        self._secret_items.append((where, lines, kind))
        self._secret_bytes += size
        if self._secret_bytes >= SECRETS_BATCH:
            self._flush_secrets()

    def add_code_objects(self, where: Location, objects: Sequence[Mapping[str, Any]]) -> None:
        for code in objects:
            self.result.code_objects.append({**code, "file": where.file, "member": where.member})

    def _flush_secrets(self) -> None:
        if self._secret_items:
            self.result.findings.extend(secrets.scan_batch(self._secret_items))
        self._secret_items, self._secret_bytes = [], 0
