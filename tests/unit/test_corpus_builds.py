"""The malicious corpus builds fast, covers every class it names, and runs nothing.

Why: `bench/scan_corpus.py` and the scanner's regression tests trust this corpus. If a
sample silently disappeared, or building it ever executed a payload, the detection numbers
would lie; this test catches both in a few seconds without any scanner.
"""

from __future__ import annotations

import json
import pickletools
import re
from collections import Counter
from pathlib import Path

import pytest

from tests.corpus import malicious, read_manifest
from tests.corpus.gadgets import ROTATION
from tests.corpus.malicious import build_malicious_corpus

# Streams that are malformed on purpose: the technique is the malformation.
MALFORMED_ON_PURPOSE = {
    "stream_trailing_garbage.pkl",
    "stream_truncated_after_reduce.pkl",
    "broken_protocol0_exec.pkl",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("corpus")
    build_malicious_corpus(root / "out", root / "markers")
    return root / "out", root / "markers"


def test_at_least_100_samples_every_class_populated(corpus: tuple[Path, Path]) -> None:
    out, _ = corpus
    samples = read_manifest(out)
    assert len(samples) >= 100
    per_class = Counter(s.technique for s in samples)
    assert all(n >= 1 for n in per_class.values()), per_class
    assert len(per_class) >= 20, "technique classes collapsed"
    assert all(s.expected for s in samples)
    body = json.loads((out / "manifest.json").read_text())
    assert body["count"] == len(samples)


def test_every_listed_sample_exists(corpus: tuple[Path, Path]) -> None:
    out, _ = corpus
    missing = [s.path for s in read_manifest(out) if not (out / s.path).exists()]
    assert not missing


def test_building_runs_no_payload(corpus: tuple[Path, Path]) -> None:
    _, markers = corpus
    assert markers.is_dir()
    assert list(markers.iterdir()) == []


def test_pickle_samples_parse_without_loading(corpus: tuple[Path, Path]) -> None:
    """pickletools.genops reads opcodes only; a typo in a hand-written stream shows here."""
    out, _ = corpus
    broken = []
    for sample in read_manifest(out):
        path = out / sample.path
        if path.suffix != ".pkl" or sample.path in MALFORMED_ON_PURPOSE:
            continue
        try:
            for _ in pickletools.genops(path.read_bytes()):
                pass
        except ValueError as exc:
            broken.append(f"{sample.path}: {exc}")
    assert not broken


def _gadget_key(payload: str) -> str | None:
    match = re.search(r"via (\w+)\)?$", payload)
    return match.group(1) if match else None


def test_trick_and_container_samples_rotate_public_gadgets(corpus: tuple[Path, Path]) -> None:
    """Trick and container samples carry gadgets from the rotation, not all `os.system`;
    every gadget is used, evenly, and the module docstring lists the rotation."""
    out, markers = corpus
    samples = read_manifest(out)
    rotated = {s.path: _gadget_key(s.payload) for s in samples if _gadget_key(s.payload)}
    used = Counter(rotated.values())
    assert set(used) == {g.key for g in ROTATION}
    assert max(used.values()) - min(used.values()) <= 2, used
    for technique in ("opcode-protocol", "opcode-stack-global-indirection", "stream-framing",
                      "container-zip", "container-compressed", "safetensors"):  # fmt: skip
        keys = {rotated.get(s.path) for s in samples if s.technique == technique}
        assert len(keys - {None}) >= 3, (technique, keys)
    assert all(f"- {g.key}:" in (malicious.__doc__ or "") for g in ROTATION)
    # each rotated pickle names its own marker (plain or \\uXXXX-escaped), nobody else's
    for path in rotated:
        if not path.endswith(".pkl"):
            continue
        marker = str(markers / path.split(".")[0])
        escaped = "".join(f"\\u{ord(c):04x}" for c in marker).encode()
        data = (out / path).read_bytes()
        assert marker.encode() in data or escaped in data, path
