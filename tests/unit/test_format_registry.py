"""The ordered registry of format scanners: which engine each kind of blob goes to, by content,
and that the walker consults nothing else."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gates.base import Status
from gates.security import scan_path
from gates.security.common import Location
from gates.security.config import SecurityConfig
from gates.security.format_scanner import Blob, Stage
from gates.security.scanners import REGISTRY
from tests.unit.format_helpers import OS_SYSTEM_PICKLE, SAVED_MODEL_HEAD, benign_safetensors

NO_MODELSCAN = SecurityConfig(modelscan=False)


def _claimed_by(blob: Blob) -> str:
    """The name of the first scanner in registry order that runs in the blob's stage and
    claims it, as the walker picks it."""
    return next(s.name for s in REGISTRY if blob.stage in s.stages and s.sniff(blob))


def _in_memory(
    data: bytes, name: str, *, siblings: frozenset[str] = frozenset(), member_path: str = ""
) -> Blob:
    where = Location("a").child(name)
    return Blob.in_memory(data, where, name, 1, siblings=siblings, member_path=member_path or None)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _zip(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_every_scanner_has_a_name_and_stages_and_each_stage_a_fallback() -> None:
    names = [s.name for s in REGISTRY]
    assert len(names) == len(set(names)), names
    for stage in Stage:
        last = [s for s in REGISTRY if stage in s.stages][-1]
        assert last.sniff(Blob.head_only(b"\x00\x01", Location("x"), "x", 0)), stage
    assert [s.name for s in REGISTRY if Stage.ON_DISK in s.stages] == [
        "zip",
        "7z",
        "safetensors",
        "gguf",
        "hdf5",
        "onnx",
        "read into memory",
    ]


BLOB_CASES = [
    (OS_SYSTEM_PICKLE, "weights.bin", "pickle"),  # content, not the name
    (b"not really a pickle at all\n", "model.pkl", "pickle"),  # the name breaks the tie
    (b"cos\nsystem\n(S'id'\ntR.", "notes.txt", "pickle"),  # protocol 0 GLOBAL first
    (_zip(**{"data.pkl": OS_SYSTEM_PICKLE}), "config.json", "zip"),
    (b"junk in front" + _zip(**{"a.txt": b"x"}), "model.bin", "zip"),  # a polyglot
    (gzip.compress(OS_SYSTEM_PICKLE, mtime=0), "model.joblib", "compressed stream"),
    (_npy(np.zeros(3)), "w.npy", "npy"),
    (benign_safetensors(), "w.bin", "safetensors"),
    (b"\x89HDF\r\n\x1a\n" + b"\x00" * 64, "w.bin", "hdf5"),
    (SAVED_MODEL_HEAD, "saved_model.pb", "tensorflow-protobuf"),
    (SAVED_MODEL_HEAD, "saved_model.bin", "raw data"),  # TensorFlow loads .pb by name
    (b"name: model\nflavors: {}\n", "MLmodel", "text"),
    (bytes(range(256)) * 4, "tensor.bin", "raw data"),
]


@pytest.mark.parametrize(
    ("data", "name", "expected"),
    BLOB_CASES,
    # ids from the names, never from the bytes: every xdist worker must collect the same ids
    ids=[f"{name}->{expected}" for _, name, expected in BLOB_CASES],
)
def test_in_memory_blobs_go_to_the_engine_their_content_calls_for(
    data: bytes, name: str, expected: str
) -> None:
    assert _claimed_by(_in_memory(data, name)) == expected


def test_zip_members_are_recognised_by_their_neighbours() -> None:
    config = json.dumps({"class_name": "Sequential", "config": {"layers": []}}).encode()
    keras_zip = frozenset({"config.json", "metadata.json", "model.weights.h5"})
    member = _in_memory(config, "config.json", siblings=keras_zip, member_path="config.json")
    assert _claimed_by(member) == "keras config"
    # the same bytes without a Keras v3 archive around them are text
    assert _claimed_by(_in_memory(config, "config.json")) == "text"
    nested = _in_memory(config, "config.json", siblings=keras_zip, member_path="sub/config.json")
    assert _claimed_by(nested) == "text"
    schema = b'{"__loader__": "ObjectNode", "protocol": 2, "_skops_version": "0.11"}'
    skops_zip = frozenset({"schema.json", "0.npy"})
    assert _claimed_by(_in_memory(schema, "schema.json", siblings=skops_zip)) == "skops schema"


def test_files_on_disk_are_judged_from_a_path_before_they_are_read(tmp_path: Path) -> None:
    onnx_named = tmp_path / "model.onnx"
    onnx_named.write_bytes(b"anything")
    big = tmp_path / "weights.bin"
    big.write_bytes(bytes(range(256)) * 1024)
    for path, expected in [(onnx_named, "onnx"), (big, "read into memory")]:
        head = path.read_bytes()[:65536]
        assert _claimed_by(Blob.on_disk(path, head, Location(path.name))) == expected


def test_a_stream_header_that_does_not_inflate_goes_to_the_next_scanner(tmp_path: Path) -> None:
    # 0x78 0x9c opens a zlib stream; the rest is not one, so it is raw data, not a finding
    (tmp_path / "tensor.bin").write_bytes(b"\x78\x9c" + bytes(range(256)) * 4)
    result = scan_path(tmp_path, NO_MODELSCAN)
    assert result.status == Status.PASS, result.message
    assert [c["format"] for c in result.evidence["coverage"]] == ["raw data"]


def test_keras_v3_archive_is_scanned_through_the_registry(tmp_path: Path) -> None:
    config = {
        "class_name": "Sequential",
        "config": {
            "layers": [
                {
                    "module": "keras.layers",
                    "class_name": "Lambda",
                    "config": {"name": "lam", "function": {"module": "os", "class_name": "system"}},
                }
            ]
        },
    }
    path = tmp_path / "model.keras"
    path.write_bytes(_zip(**{"config.json": json.dumps(config).encode(), "metadata.json": b"{}"}))
    result = scan_path(path, NO_MODELSCAN)
    assert result.status == Status.FAIL
    assert "SEC-KERAS-001" in {f.rule_id for f in result.findings}
    assert {"format": "keras config", "file": "model.keras", "member": "config.json"} in (
        result.evidence["coverage"]
    )
