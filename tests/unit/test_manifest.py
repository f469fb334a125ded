"""The artifact manifest: every file hashed, symlinks recorded not followed, digest stable."""

from __future__ import annotations

import hashlib
from pathlib import Path

from service.mlflow.fetch import build_manifest, manifest_digest


def test_manifest_hashes_every_file_and_records_symlinks(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    (tmp_path / "sub" / "weights.bin").write_bytes(b"\x00" * 1000)
    (tmp_path / "escape").symlink_to("/etc/passwd")
    manifest = build_manifest(tmp_path)
    by_path = {entry["path"]: entry for entry in manifest}
    assert by_path["sub/weights.bin"]["sha256"] == hashlib.sha256(b"\x00" * 1000).hexdigest()
    assert by_path["sub/weights.bin"]["size"] == 1000
    assert by_path["escape"] == {"path": "escape", "symlink_to": "/etc/passwd"}
    assert set(by_path) == {"MLmodel", "sub/weights.bin", "escape"}


def test_digest_changes_when_any_byte_changes(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(b"abc")
    before = manifest_digest(build_manifest(tmp_path))
    assert before == manifest_digest(build_manifest(tmp_path))
    (tmp_path / "model.pkl").write_bytes(b"abd")
    assert manifest_digest(build_manifest(tmp_path)) != before
