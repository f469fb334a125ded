"""The ordered registry of format scanners the walker consults, and the adapters that fit the
engines to the FormatScanner protocol (`format_scanner.py`).

Order is precedence: the first scanner whose sniff claims a blob scans it. A file on disk is
tried against the scanners that judge a path (zip, 7z, safetensors, HDF5, ONNX) before it is
read into memory; in memory, zip-context formats (a skops `schema.json`, a Keras v3
`config.json`) come before containers, containers before formats, and text before the raw-data
fallback, which claims whatever is left. The format engines themselves (`formats/`,
`pickle_vm.py`) keep their own signatures, which their tests call directly.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from gates.base import Finding
from gates.security import archives, rules, secrets
from gates.security.common import Location, ScanLimitExceeded
from gates.security.containers import (
    CompressedStreamScanner,
    SevenZipScanner,
    TarScanner,
    ZipScanner,
)
from gates.security.format_scanner import (
    HEAD,
    STRINGS_WINDOW,
    Blob,
    FormatScanner,
    Stage,
    Walk,
    is_text,
    needs_whole,
)
from gates.security.formats import (
    chat_template,
    gguf,
    keras,
    numpy_files,
    onnx_format,
    safetensors,
    skops,
)
from gates.security.formats import tensorflow as tf_format
from gates.security.pickle_judge import analyze_pickle
from gates.security.pickle_vm import looks_like_pickle

TEXT_LIMIT = 10 * 1024 * 1024
# Names that promise a loadable model format; content that matches none of them is suspect.
MODEL_SUFFIXES = {
    ".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib", ".dill", ".npy", ".npz", ".h5",
    ".hdf5", ".keras", ".onnx", ".safetensors", ".skops", ".pb", ".sav", ".model", ".mar",
}  # fmt: skip
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib", ".dill", ".sav"})
LEGACY_TORCH_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[2:-1]
_PROTOCOL0_GLOBAL = re.compile(rb"\Ac[A-Za-z_][\w.]*\n[A-Za-z_][\w.]*\n")
_IN_MEMORY = frozenset({Stage.IN_MEMORY})
_BOTH = frozenset({Stage.ON_DISK, Stage.IN_MEMORY})


# -- formats inside a zip, recognised by their neighbours ----------------------------------


class SkopsSchemaScanner:
    """`schema.json` of a skops zip (formats/skops.py)."""

    name = "skops schema"
    stages = _IN_MEMORY

    def sniff(self, blob: Blob) -> bool:
        return (
            blob.name == skops.SCHEMA_MEMBER
            and blob.data is not None
            and skops.looks_like_skops(sorted(blob.siblings), blob.data)
        )

    def scan(self, blob: Blob, walk: Walk) -> Iterable[Finding]:
        assert blob.data is not None
        walk.covered(blob.where, self.name)
        return skops.scan_skops_schema(blob.data, blob.where, walk.policy)


class KerasConfigScanner:
    """`config.json` at the root of a Keras v3 `.keras` zip (formats/keras.py)."""

    name = "keras config"
    stages = _IN_MEMORY

    def sniff(self, blob: Blob) -> bool:
        return blob.member_path == "config.json" and keras.looks_like_keras_v3(
            sorted(blob.siblings)
        )

    def scan(self, blob: Blob, walk: Walk) -> Iterable[Finding]:
        assert blob.data is not None
        walk.covered(blob.where, self.name)
        try:
            config = json.loads(blob.data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            _queue_text(blob, walk)
            return ()
        if not isinstance(config, dict):
            return ()
        return keras.scan_keras_config(config, blob.where, walk.policy)


# -- formats read from a path --------------------------------------------------------------


class SafetensorsScanner:
    """safetensors header checks (formats/safetensors.py); the bytes after the last tensor
    are scanned as a blob of their own (a pickle or zip appended there is a polyglot)."""

    name = "safetensors"
    stages = _BOTH

    def sniff(self, blob: Blob) -> bool:
        return safetensors.looks_like_safetensors(blob.head)

    def scan(self, blob: Blob, walk: Walk) -> Iterator[Finding]:
        path = walk.spill(blob)
        walk.covered(blob.where, self.name)
        yield from safetensors.scan_safetensors(path, blob.where, walk.limits)
        tail = safetensors.trailing_region(path)
        if tail:
            with path.open("rb") as fh:
                fh.seek(tail[0])
                data = fh.read(tail[1] - tail[0])
            walk.scan(Blob.in_memory(data, blob.where.child("<tail>"), blob.name, blob.depth + 1))


class GgufScanner:
    """GGUF (llama.cpp): header and metadata read with bounds (formats/gguf.py), the chat
    templates in it judged; tensors are never read."""

    name = "gguf"
    stages = _BOTH

    def sniff(self, blob: Blob) -> bool:
        return gguf.looks_like_gguf(blob.head)

    def scan(self, blob: Blob, walk: Walk) -> Iterable[Finding]:
        path = walk.spill(blob)
        walk.covered(blob.where, self.name)
        return list(gguf.scan_gguf(path, blob.where))


class Hdf5Scanner:
    """Keras configs in the root attributes of an HDF5 file (formats/keras.py)."""

    name = "hdf5"
    stages = _BOTH

    def sniff(self, blob: Blob) -> bool:
        return keras.looks_like_hdf5(blob.head)

    def scan(self, blob: Blob, walk: Walk) -> Iterable[Finding]:
        path = walk.spill(blob)
        walk.covered(blob.where, self.name)
        return keras.scan_h5(path, blob.where, walk.policy, walk.limits)


class OnnxScanner:
    """ONNX custom domains and external data (formats/onnx_format.py). Files only: external
    data is resolved against the model file's directory."""

    name = "onnx"
    stages = frozenset({Stage.ON_DISK})

    def sniff(self, blob: Blob) -> bool:
        return blob.name.endswith(".onnx") or onnx_format.looks_like_onnx(blob.head)

    def scan(self, blob: Blob, walk: Walk) -> Iterable[Finding]:
        assert blob.path is not None
        walk.covered(blob.where, self.name)
        return onnx_format.scan_onnx(blob.path, blob.where, blob.path.parent)


class ReadWholeFile:
    """The last scanner for a file on disk: read it into memory when its content needs more
    than its head, else judge the head alone (large tensor storage is never read whole)."""

    name = "read into memory"
    stages = frozenset({Stage.ON_DISK})

    def sniff(self, blob: Blob) -> bool:
        return True

    def scan(self, blob: Blob, walk: Walk) -> Iterable[Finding]:
        assert blob.path is not None
        size = blob.path.stat().st_size
        if size > walk.limits.max_member_bytes:
            raise ScanLimitExceeded("file_size", f"{size} bytes is over the in-memory bound")
        if needs_whole(blob.head, blob.name) or size <= HEAD:
            walk.scan(Blob.in_memory(blob.path.read_bytes(), blob.where, blob.name, blob.depth))
        else:
            walk.scan(Blob.head_only(blob.head, blob.where, blob.name, blob.depth))
        return ()


# -- formats read from bytes ---------------------------------------------------------------


class PickleScanner:
    """The symbolic pickle machine (pickle_vm.py). A file named like a pickle, or opening with
    a protocol-0 `GLOBAL module\\nname\\n`, is parsed as one even when the content sniff says
    no, so a stream that breaks after naming `builtins.exec` is a finding, not text."""

    name = "pickle"
    stages = _IN_MEMORY

    def sniff(self, blob: Blob) -> bool:
        assert blob.data is not None
        return looks_like_pickle(blob.data) or _claims_pickle(blob.data, blob.name)

    def scan(self, blob: Blob, walk: Walk) -> Iterable[Finding]:
        assert blob.data is not None
        return self.findings(blob.data, blob.where, walk)

    def findings(self, data: bytes, where: Location, walk: Walk) -> list[Finding]:
        """Pickle findings for bytes at `where` (also for pickles inside other formats)."""
        legacy_torch = data[2 : 2 + len(LEGACY_TORCH_MAGIC)] == LEGACY_TORCH_MAGIC
        report = analyze_pickle(data, where, walk.limits, walk.policy, allow_trailing=legacy_torch)
        walk.covered(where, "pickle (legacy torch)" if legacy_torch else "pickle")
        walk.add_code_objects(where, report.code_objects)
        return report.findings


class NumpyScanner:
    """`.npy` arrays (formats/numpy_files.py); an object array's pickle goes to the pickle
    machine, its findings next to the array's."""

    name = "npy"
    stages = _IN_MEMORY

    def sniff(self, blob: Blob) -> bool:
        return numpy_files.looks_like_npy(blob.head)

    def scan(self, blob: Blob, walk: Walk) -> Iterable[Finding]:
        assert blob.data is not None
        walk.covered(blob.where, self.name)

        def pickle_findings(data: bytes, where: Location) -> list[Finding]:
            return PICKLE.findings(data, where, walk)

        return numpy_files.scan_npy(blob.data, blob.where, walk.limits, pickle_findings)


class TensorflowScanner:
    """`saved_model.pb`, frozen graphs and `keras_metadata.pb` (formats/tensorflow.py).
    TensorFlow finds them by name, so a name ending `.pb` is what claims them."""

    name = "tensorflow-protobuf"
    stages = _IN_MEMORY

    def sniff(self, blob: Blob) -> bool:
        return blob.name.endswith(".pb")

    def scan(self, blob: Blob, walk: Walk) -> Iterable[Finding]:
        assert blob.data is not None
        walk.covered(blob.where, self.name)
        return tf_format.scan_saved_model_pb(blob.data, blob.where, walk.policy)


class ChatTemplateScanner:
    """Chat templates, found by content: any JSON with a `chat_template` key (at any depth:
    `tokenizer_config.json`, `chat_template.json`, `processor_config.json`, or a file of any
    name), YAML configs with one, `*.jinja` / `*.jinja2` / `*.j2` files and Jinja-looking
    `*.template` / `*.tmpl` files (formats/chat_template.py). The templates are judged from
    their syntax tree; the text is still searched for secrets, and a file that turns out to
    hold no template is text like any other."""

    name = "chat template"
    stages = _IN_MEMORY

    def sniff(self, blob: Blob) -> bool:
        assert blob.data is not None
        if blob.name.lower().endswith(chat_template.JINJA_SUFFIXES):
            return True  # a NUL byte does not stop a renderer: judged whatever its bytes
        return (
            is_text(blob.head)
            and archives.unopened_kind(blob.head, blob.name) is None  # TextScanner's to report
            and chat_template.may_carry_templates(blob.name, blob.data)
        )

    def scan(self, blob: Blob, walk: Walk) -> Iterable[Finding]:
        assert blob.data is not None
        carried = chat_template.carried_templates(blob.name, blob.data)
        findings = list(chat_template.judge_carried(carried, blob.where)) if carried else []
        _queue_text(blob, walk)
        if carried and carried.templates:
            walk.covered(blob.where, self.name)
        return findings


class TextScanner:
    """Text: searched for secrets (batched by the walker), unless it is an archive format the
    scanner recognises but does not open (SEC-FILE-004)."""

    name = "text"
    stages = _IN_MEMORY

    def sniff(self, blob: Blob) -> bool:
        return is_text(blob.head)

    def scan(self, blob: Blob, walk: Walk) -> Iterable[Finding]:
        unopened = _unopened(blob, walk)
        if unopened:
            return (unopened,)
        _queue_text(blob, walk)
        return ()


class RawDataScanner:
    """The fallback: bytes no loader interprets as code (tensor storage, weights). Their
    strings are searched for secrets; a file named like a model that matched no format is
    SEC-FILE-003, an archive the scanner does not open SEC-FILE-004."""

    name = "raw data"
    stages = frozenset({Stage.IN_MEMORY, Stage.HEAD_ONLY})

    def sniff(self, blob: Blob) -> bool:
        return True

    def scan(self, blob: Blob, walk: Walk) -> Iterable[Finding]:
        unopened = _unopened(blob, walk)
        if unopened:
            return (unopened,)
        walk.covered(blob.where, self.name)
        strings = secrets.extract_strings(blob.head[:STRINGS_WINDOW])
        walk.queue_secrets(blob.where, strings, "strings", sum(map(len, strings)))
        suffix = Path(blob.name).suffix
        if suffix.lower() in MODEL_SUFFIXES and not blob.where.member:
            return (
                rules.FILE_UNKNOWN_MODEL_FORMAT.finding(
                    f"named like a model file ({suffix}) but its content matches no known model "
                    "format; it cannot be checked",
                    blob.where,
                    {"head_hex": blob.head[:16].hex()},
                ),
            )
        return ()


def _unopened(blob: Blob, walk: Walk) -> Finding | None:
    """An archive format we recognise but do not open: a finding, never a pass."""
    kind = archives.unopened_kind(blob.head, blob.name)
    if kind is None:
        return None
    walk.covered(blob.where, f"unopened archive ({kind})")
    return rules.FILE_UNOPENED_ARCHIVE.finding(
        f"{kind} archive or compressed data that the scanner does not open; its "
        "content cannot be checked",
        blob.where,
        {"format": kind, "head_hex": blob.head[:16].hex()},
    )


def _queue_text(blob: Blob, walk: Walk) -> None:
    assert blob.data is not None
    walk.covered(blob.where, "text")
    if len(blob.data) <= TEXT_LIMIT:
        lines = blob.data.decode("utf-8", errors="replace").splitlines()
        walk.queue_secrets(blob.where, lines, "text", len(blob.data))


def _claims_pickle(data: bytes, name: str) -> bool:
    """Named like a pickle, or opening with a protocol-0 GLOBAL: parse it as one even when the
    sniff says no (a stream that breaks after naming a callable is still a finding)."""
    if Path(name).suffix.lower() in PICKLE_SUFFIXES:
        return True
    return bool(_PROTOCOL0_GLOBAL.match(data[:512]))


PICKLE = PickleScanner()

REGISTRY: tuple[FormatScanner, ...] = (
    SkopsSchemaScanner(),
    KerasConfigScanner(),
    ZipScanner(),
    TarScanner(),
    SevenZipScanner(),
    CompressedStreamScanner(),
    NumpyScanner(),
    PICKLE,
    SafetensorsScanner(),
    GgufScanner(),
    Hdf5Scanner(),
    OnnxScanner(),
    ReadWholeFile(),
    TensorflowScanner(),
    ChatTemplateScanner(),
    TextScanner(),
    RawDataScanner(),
)
