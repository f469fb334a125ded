"""The FormatScanner protocol: how the walker hands a blob to the engine its content calls for.

A blob is a file under the scan root or bytes in memory (a container member, a decompressed
stream, the tail after a safetensors file). The walker (`walker.py`) asks the scanners of the
ordered registry (`scanners.py`) in turn whether they recognise the blob (`sniff`) and lets the
first that does `scan` it. Sniffs look at content; names only break ties (`.pb` for
TensorFlow, a `.pkl` that breaks early is still a pickle). A scan yields the findings about the
blob; what it finds inside (zip members, a decompressed stream, a polyglot tail) it hands back
to the walker with `Walk.scan`, so nested blobs are dispatched and bounded like any other.

A sniff sees the whole `Blob`, not only its head: a zip is recognised by the central directory
at its end (a zip with a pickle in front of it is still a zip to Python's zipfile), skops and
Keras v3 by the other members of their zip.

Each blob is in one `Stage`, and a scanner says in which stages it runs:

- `ON_DISK`: a file under the scan root of which only the head was read. Formats judged from
  a path (zip, 7z, safetensors, HDF5, ONNX) go first, so a 2 GiB weights file is never read
  into memory; the last scanner of this stage reads the file when its content needs it and
  hands the bytes back as an `IN_MEMORY` blob.
- `IN_MEMORY`: the bytes are all there.
- `HEAD_ONLY`: only the first `HEAD` bytes of a large blob were read, because nothing in them
  asks for more (tensor storage, weights): its strings are searched for secrets, nothing else.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, Protocol

from gates.base import Finding
from gates.security.callables import CallablePolicy
from gates.security.common import Limits, Location
from gates.security.decompress import stream_kind
from gates.security.pickle_vm import looks_like_pickle

HEAD = 64 * 1024  # what a sniff sees of a large file
# Named as Jinja templates: read whole and judged whatever their bytes (formats/chat_template.py)
TEMPLATE_SUFFIXES = (".jinja", ".jinja2", ".j2")
STRINGS_WINDOW = 1024 * 1024  # unknown binaries: secrets are looked for in the first MiB

P = ParamSpec("P")


class Stage(enum.Enum):
    ON_DISK = "on disk"
    IN_MEMORY = "in memory"
    HEAD_ONLY = "head only"


class NotThisFormat(Exception):
    """Raised by a scan, before it yields anything, when the content turns out not to be its
    format after all (a zlib header is two bytes): the walker tries the next scanner."""


@dataclass(frozen=True)
class Blob:
    """What is being scanned: where it is, what it is called, and its bytes or its path."""

    where: Location
    name: str  # the last component of its name, for the few sniffs that use names
    head: bytes  # the first HEAD bytes
    depth: int = 0  # containers around it
    path: Path | None = None  # ON_DISK: the file
    data: bytes | None = None  # IN_MEMORY: every byte
    siblings: frozenset[str] = frozenset()  # a zip member: the names of every member
    member_path: str | None = None  # a zip member: its full name inside the zip

    @classmethod
    def on_disk(cls, path: Path, head: bytes, where: Location) -> Blob:
        return cls(where, path.name, head, path=path)

    @classmethod
    def in_memory(
        cls,
        data: bytes,
        where: Location,
        name: str,
        depth: int,
        *,
        siblings: frozenset[str] = frozenset(),
        member_path: str | None = None,
    ) -> Blob:
        return cls(
            where,
            name,
            data[:HEAD],
            depth,
            data=data,
            siblings=siblings,
            member_path=member_path,
        )

    @classmethod
    def head_only(cls, head: bytes, where: Location, name: str, depth: int) -> Blob:
        return cls(where, name, head[:HEAD], depth)

    @property
    def stage(self) -> Stage:
        if self.data is not None:
            return Stage.IN_MEMORY
        return Stage.ON_DISK if self.path is not None else Stage.HEAD_ONLY

    @property
    def source(self) -> Path | bytes:
        """The file or the bytes, for parsers that take either."""
        if self.data is not None:
            return self.data
        assert self.path is not None, "a head-only blob has no source"
        return self.path


class Walk(Protocol):
    """What the walker offers the scanners."""

    @property
    def limits(self) -> Limits: ...

    @property
    def policy(self) -> CallablePolicy: ...

    def scan(self, blob: Blob) -> None:
        """Dispatch a blob found inside the one being scanned (bounded by depth and time)."""

    def guarded(
        self, where: Location, action: Callable[P, object], /, *args: P.args, **kwargs: P.kwargs
    ) -> None:
        """Run `action`; a bound it hits or an unreadable container becomes a finding at
        `where` and the scan goes on with the next member."""

    def covered(self, where: Location, fmt: str) -> None:
        """Record that the blob at `where` was scanned as `fmt` (the report's coverage)."""

    def spill(self, blob: Blob) -> Path:
        """The blob as a file, for parsers that want a path (h5py, the safetensors reader)."""

    def queue_secrets(self, where: Location, lines: list[str], kind: str, size: int) -> None:
        """Lines of text (or strings of a binary) for the batched secret search."""

    def add_code_objects(self, where: Location, objects: Sequence[Mapping[str, Any]]) -> None:
        """Code found embedded in a pickle, for the report."""


class FormatScanner(Protocol):
    """One format (or container, or fallback) the walker can hand a blob to."""

    @property
    def name(self) -> str: ...

    @property
    def stages(self) -> frozenset[Stage]: ...

    def sniff(self, blob: Blob) -> bool:
        """Is this blob in my format? Cheap: content first, names only to break ties."""

    def scan(self, blob: Blob, walk: Walk) -> Iterable[Finding]:
        """The findings about this blob; nested blobs go back through `walk.scan`."""


# -- sniffs more than one scanner needs -----------------------------------------------------


def is_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > len(head) - 4  # a multi-byte character cut at the window's end
    return True


def is_tar(head: bytes) -> bool:
    return len(head) > 262 and head[257:262] == b"ustar"


def needs_whole(head: bytes, name: str) -> bool:
    """Does this content need more than its head to be judged?"""
    return bool(
        head.startswith((b"PK\x03\x04", b"\x93NUMPY"))
        or stream_kind(head)
        or looks_like_pickle(head)
        or is_tar(head)
        or is_text(head)
        or name.endswith(".pb")
        or name.lower().endswith(TEMPLATE_SUFFIXES)
    )
