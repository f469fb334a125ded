"""Signatures cover exactly what was judged and say what the verdict was about.

Real files, a real key pair, the model-signing library and its own CLI: no server needed."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from service.integrity.envelope import STATUS_TYPE, open_envelope, sign_envelope
from service.integrity.keys import generate_key_pair
from service.integrity.signing import (
    SignedClaims,
    VerificationFailed,
    sign_directory,
    signed_statement,
    verify_directory,
)
from tests.helpers import VENV_BIN

CLAIMS = SignedClaims("credit", 7, "ab" * 32, "cd" * 32, "run-1", "")


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / ".git").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {}\n")
    (root / "model.pkl").write_bytes(b"\x80\x04K\x01.")
    (root / ".git" / "model.pkl").write_bytes(b"\x80\x04K\x02.")
    (root / ".gitattributes").write_text("* binary\n")
    return root


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "key.pem"
    generate_key_pair(path)
    return path


def test_the_signature_covers_git_paths_and_names_the_verdict(model: Path, key: Path) -> None:
    bundle = sign_directory(model, key, CLAIMS)
    predicate = signed_statement(bundle)["predicate"]
    assert {r["name"] for r in predicate["resources"]} == {
        "MLmodel", "model.pkl", ".git/model.pkl", ".gitattributes",
    }  # fmt: skip
    assert "ignore_paths" not in predicate["serialization"]
    assert verify_directory(model, bundle, key.with_suffix(".pub")) == CLAIMS


def test_a_pickle_swapped_under_dot_git_after_signing_fails_verification(
    model: Path, key: Path
) -> None:
    bundle = sign_directory(model, key, CLAIMS)
    (model / ".git" / "model.pkl").write_bytes(b"cos\nsystem\n(S'id'\ntR.")
    with pytest.raises(VerificationFailed, match=r"\.git/model\.pkl is not the file"):
        verify_directory(model, bundle, key.with_suffix(".pub"))
    (model / ".git" / "model.pkl").unlink()
    with pytest.raises(VerificationFailed, match=r"\.git/model\.pkl is missing"):
        verify_directory(model, bundle, key.with_suffix(".pub"))


def test_a_bundle_that_ignores_paths_is_refused_even_when_the_key_signed_it(
    model: Path, key: Path, tmp_path: Path
) -> None:
    """model-signing's default signature (git paths left out), made with the right key."""
    signature = tmp_path / "default.sig"
    subprocess.run(
        [str(VENV_BIN / "model_signing"), "sign", "key", str(model), "--private_key", str(key),
         "--signature", str(signature)],
        check=True, capture_output=True,
    )  # fmt: skip
    with pytest.raises(VerificationFailed, match="out of its manifest"):
        verify_directory(model, signature.read_text(), key.with_suffix(".pub"))


def test_an_extra_file_and_another_key_are_refused(model: Path, key: Path, tmp_path: Path) -> None:
    bundle = sign_directory(model, key, CLAIMS)
    other = tmp_path / "other.pem"
    generate_key_pair(other)
    with pytest.raises(VerificationFailed):
        verify_directory(model, bundle, other.with_suffix(".pub"))
    (model / "loader.py").write_text("import os\n")
    with pytest.raises(VerificationFailed, match=r"loader\.py was not among the files"):
        verify_directory(model, bundle, key.with_suffix(".pub"))


def test_the_plain_model_signing_cli_verifies_the_bundle(
    model: Path, key: Path, tmp_path: Path
) -> None:
    signature = tmp_path / "model.sig"
    signature.write_text(sign_directory(model, key, CLAIMS))
    plain = subprocess.run(
        [str(VENV_BIN / "model_signing"), "verify", "key", str(model), "--public_key",
         str(key.with_suffix(".pub")), "--signature", str(signature), "--no-ignore-git-paths"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stdout + plain.stderr


def test_a_signed_answer_cannot_be_altered_or_signed_by_another_key(
    key: Path, tmp_path: Path
) -> None:
    envelope = sign_envelope(key, STATUS_TYPE, {"promotable": False, "nonce": "n" * 16})
    public = key.with_suffix(".pub").read_bytes()
    assert open_envelope(public, STATUS_TYPE, envelope)["promotable"] is False
    altered = json.loads(json.dumps(envelope))
    altered["payload"] = base64.b64encode(
        b'{"nonce":"nnnnnnnnnnnnnnnn","promotable":true}'
    ).decode()
    with pytest.raises(VerificationFailed, match="not signed by the pinned"):
        open_envelope(public, STATUS_TYPE, altered)
    other = tmp_path / "other.pem"
    generate_key_pair(other)
    forged = sign_envelope(other, STATUS_TYPE, {"promotable": True})
    with pytest.raises(VerificationFailed, match="not signed by the pinned"):
        open_envelope(public, STATUS_TYPE, forged)
    with pytest.raises(VerificationFailed, match="not a signed"):
        open_envelope(public, "application/other", envelope)
