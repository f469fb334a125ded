"""Shared pieces of the security engines: scan limits, where a finding sits, JSON walking.

Every engine is a pure function of bytes (or a local path) that returns findings and never
imports, loads or executes what it inspects. Findings are made from the rule catalogue
(`rules.py`): `rules.PICKLE_DANGEROUS_CALLABLE.finding(message, where, evidence)`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ScanLimitExceeded(Exception):
    """A bound (depth, members, decompressed size, time, pickle ops) was hit: a finding."""

    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(f"{limit}: {detail}")
        self.limit = limit
        self.detail = detail


@dataclass
class Limits:
    """Bounds on hostile input. Exceeding one ends that file's scan in a SEC-LIMIT finding."""

    max_depth: int = 6  # nested containers (zip in zip in gzip ...)
    max_members: int = 10_000  # members per container
    max_decompressed_bytes: int = 4 * 1024**3  # per scan, all containers together
    max_member_bytes: int = 2 * 1024**3  # one member held in memory
    max_pickle_ops: int = 5_000_000  # opcodes per pickle stream
    max_pickle_values: int = 2_000_000  # symbolic values alive in one stream (DUP/GET bombs)
    max_header_bytes: int = 100 * 1024**2  # safetensors / npy headers
    time_budget_s: float = 300.0
    started: float = field(default_factory=time.monotonic)
    decompressed_total: int = 0

    def check_time(self) -> None:
        if time.monotonic() - self.started > self.time_budget_s:
            raise ScanLimitExceeded("time", f"scan exceeded {self.time_budget_s:.0f}s")

    def add_decompressed(self, n: int) -> None:
        self.decompressed_total += n
        if self.decompressed_total > self.max_decompressed_bytes:
            raise ScanLimitExceeded(
                "decompressed_size",
                f"more than {self.max_decompressed_bytes} bytes decompressed (zip bomb?)",
            )


@dataclass(frozen=True)
class Location:
    """Where a scanned blob lives: the file under the scan root, and the path inside
    containers joined with '!/' (e.g. 'model.pt' + 'archive/data.pkl')."""

    file: str
    member: str | None = None

    def child(self, name: str) -> Location:
        return Location(self.file, f"{self.member}!/{name}" if self.member else name)


def json_children(obj: Any, path: str) -> Iterator[tuple[Any, str]]:
    """The nested dicts and lists of a parsed JSON document, with their paths
    (`config.layers[0]`), for walkers that must see every depth (Keras, skops)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, dict | list):
                yield value, f"{path}.{key}"
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            if isinstance(value, dict | list):
                yield value, f"{path}[{i}]"


def files_under(root: Path, wanted: Callable[[str], bool], cap: int) -> tuple[list[Path], bool]:
    """The regular files under `root` whose name `wanted` accepts, in a stable order, never
    following or listing symbolic links (the walker reports those); True when there were more
    than `cap` (only the first `cap` are returned)."""
    if root.is_file():
        return ([root] if wanted(root.name) and not root.is_symlink() else []), False
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(filenames):
            path = base / name
            if wanted(name) and not path.is_symlink() and path.is_file():
                if len(found) == cap:
                    return found, True
                found.append(path)
    return found, False


@dataclass
class ReviewedCode:
    """Python files an engine has already reported as code and handed to bandit, and the
    directories it reported whole (an MLflow model's code directories), so that the next
    engine neither reports nor analyses them again."""

    dirs: list[Path] = field(default_factory=list)
    files: set[Path] = field(default_factory=set)

    def covers(self, path: Path) -> bool:
        resolved = path.resolve()
        return resolved in self.files or any(resolved.is_relative_to(d) for d in self.dirs)
