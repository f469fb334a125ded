"""Fetch a version's artifacts into a scratch dir and fingerprint every file."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import BoundExceeded
from service.mlflow.port import RegistryPort


@dataclass(frozen=True)
class FetchedArtifact:
    root: Path
    manifest: list[dict[str, Any]]
    digest: str


def sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def build_manifest(root: Path) -> list[dict[str, Any]]:
    """Every file under root with size and sha256; symlinks are recorded, never followed."""
    entries: list[dict[str, Any]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames) + sorted(
            d for d in dirnames if (Path(dirpath) / d).is_symlink()
        ):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                entries.append({"path": rel, "symlink_to": os.readlink(path)})
                continue
            entries.append({"path": rel, "size": path.stat().st_size, "sha256": sha256_file(path)})
    return sorted(entries, key=lambda e: e["path"])


def manifest_digest(manifest: list[dict[str, Any]]) -> str:
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def fetch_version(
    registry: RegistryPort, name: str, version: int, scratch: Path, *, max_bytes: int | None = None
) -> FetchedArtifact:
    """Download and fingerprint; over `max_bytes` (listed before, or found after, the
    download: the store may change in between) is a BoundExceeded, never a scan of a part."""
    if max_bytes is not None:
        listed = registry.artifact_size(name, version)
        if listed > max_bytes:
            raise BoundExceeded(
                f"the artifact of {name} v{version} is {listed} bytes, over the policy's "
                f"limits.max_artifact_gb ({max_bytes / 1024**3:g} GiB); not downloaded"
            )
    scratch.mkdir(parents=True, exist_ok=True)
    root = registry.download_artifacts(name, version, scratch)
    manifest = build_manifest(root)
    if max_bytes is not None:
        downloaded = sum(int(e.get("size", 0)) for e in manifest)
        if downloaded > max_bytes:
            raise BoundExceeded(
                f"the artifact of {name} v{version} grew to {downloaded} bytes during the "
                f"download, over limits.max_artifact_gb ({max_bytes / 1024**3:g} GiB)"
            )
    return FetchedArtifact(root=root, manifest=manifest, digest=manifest_digest(manifest))
