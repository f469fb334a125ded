"""OpenSSF model signing (the `model-signing` library): sign a directory, verify one.

The bundle is a sigstore bundle with a DSSE envelope around an in-toto statement listing
every file's sha256; `model_signing verify key DIR --public_key PUB --signature SIG
--no-ignore-git-paths` checks it with nothing of ours. Only passing (or waived) versions are
ever signed, and what is signed is exactly what the gates judged:

- No ignored paths. model-signing's default leaves `.git/`, `.github/`, `.gitignore` and
  `.gitattributes` out of the manifest; the gates judge them (an MLmodel can point a loader
  into `.git/`), so they are signed too, and `verify_directory` refuses a bundle whose
  manifest ignores anything.
- The statement names what the verdict was about: the predicate carries a `gatekeeper`
  object (model-signing's v1.0 predicate reserves other fields for extensions and its
  verifier ignores them) with the model name, version, artifact digest (our manifest digest),
  policy digest, the run and the key id. A bundle replayed onto another model or version,
  or over other files, is refused by `gatekeeper verify`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import GatekeeperError

SIGNATURE_NAME = "model.sig"
CLAIMS_KEY = "gatekeeper"
CLAIMS_TYPE = "mlflow-gatekeeper/verdict/v1"


class VerificationFailed(GatekeeperError):
    """The files do not match the signature, or the signature is not the key's."""

    http_status = 422


@dataclass(frozen=True)
class SignedClaims:
    """What a signature says beyond "these files": the verdict it records."""

    model: str
    version: int
    artifact_digest: str
    policy_digest: str
    run_id: str
    key_id: str = ""

    def document(self) -> dict[str, str]:
        # strings only: the predicate is a protobuf Struct, where numbers become floats
        return {
            "_type": CLAIMS_TYPE,
            "model": self.model,
            "version": str(self.version),
            "artifact_digest": self.artifact_digest,
            "policy_digest": self.policy_digest,
            "run_id": self.run_id,
            "key_id": self.key_id,
        }

    @classmethod
    def from_document(cls, document: Any) -> SignedClaims:
        if not isinstance(document, dict) or document.get("_type") != CLAIMS_TYPE:
            raise VerificationFailed(
                "the signature names no model and version (not made by this gatekeeper, or "
                "by a version of it that did not bind them): not accepted"
            )
        try:
            return cls(
                model=str(document["model"]),
                version=int(str(document["version"])),
                artifact_digest=str(document["artifact_digest"]),
                policy_digest=str(document["policy_digest"]),
                run_id=str(document["run_id"]),
                key_id=str(document["key_id"]),
            )
        except (KeyError, ValueError) as exc:
            raise VerificationFailed(f"the signed statement is malformed: {exc}") from exc


def _hashing_config() -> Any:
    """Every file, nothing ignored (model-signing ignores git paths unless told not to)."""
    import model_signing

    return model_signing.hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=False)


def sign_directory(directory: Path, private_key: Path, claims: SignedClaims) -> str:
    """The signature bundle (JSON text) over every file under `directory`, its statement
    carrying `claims`."""
    # model-signing's public Config.sign builds the statement and signs it in one call; the
    # claims go into the predicate between the two, with the same library's parts.
    from model_signing._signing import sign_ec_key
    from model_signing._signing import signing as ms_signing

    manifest = _hashing_config().hash(directory)
    payload = ms_signing.Payload(manifest)
    payload.statement.pb.predicate.update({CLAIMS_KEY: claims.document()})
    signature = sign_ec_key.Signer(private_key).sign(payload)
    with tempfile.TemporaryDirectory(prefix="gatekeeper-sign-") as tmp:
        out = Path(tmp) / SIGNATURE_NAME
        signature.write(out)
        return out.read_text(encoding="utf-8")


_MISMATCH = re.compile(r"Hash mismatch for '([^']+)'")
_EXTRA = re.compile(r"Extra files found in model '[^']*': ([^\"\]]+)")
_MISSING = re.compile(r"Missing files in model '[^']*': ([^\"\]]+)")


def signed_statement(bundle: str) -> dict[str, Any]:
    """The in-toto statement inside a bundle, read without checking the signature (the
    caller checks it with `verify_directory`, over these same bytes)."""
    try:
        envelope = json.loads(bundle)["dsseEnvelope"]
        statement = json.loads(base64.b64decode(envelope["payload"], validate=True))
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise VerificationFailed(f"not a model-signing bundle: {exc}") from exc
    if not isinstance(statement, dict) or not isinstance(statement.get("predicate"), dict):
        raise VerificationFailed("not a model-signing bundle: no predicate")
    return statement


def verify_directory(directory: Path, bundle: str, public_key: Path) -> SignedClaims:
    """Every file under `directory` is one the key signed, none is missing or extra, and the
    manifest ignored nothing; returns the statement's claims. Raises VerificationFailed
    naming the first file that differs, or why it failed."""
    import model_signing

    predicate = signed_statement(bundle)["predicate"]
    serialization = predicate.get("serialization")
    ignored = serialization.get("ignore_paths") if isinstance(serialization, dict) else None
    if ignored:
        raise VerificationFailed(
            f"the signature leaves {', '.join(map(str, ignored))[:300]} out of its manifest; "
            "a gatekeeper signature covers every file, so this one is not accepted"
        )
    claims = SignedClaims.from_document(predicate.get(CLAIMS_KEY))
    with tempfile.TemporaryDirectory(prefix="gatekeeper-verify-") as tmp:
        signature = Path(tmp) / SIGNATURE_NAME
        signature.write_text(bundle, encoding="utf-8")
        config = (
            model_signing.verifying.Config()
            .use_elliptic_key_verifier(public_key=public_key)
            .set_hashing_config(_hashing_config())
        )
        try:
            config.verify(directory, signature)
        except Exception as exc:  # the library raises ValueError and others; all mean "no"
            raise VerificationFailed(_why(str(exc))) from exc
    return claims


def _why(text: str) -> str:
    changed = _MISMATCH.search(text)
    if changed:
        return f"{changed.group(1)} is not the file the gatekeeper signed"
    extra = _EXTRA.search(text)
    if extra:
        return f"{extra.group(1).strip()} was not among the files the gatekeeper signed"
    missing = _MISSING.search(text)
    if missing:
        return f"{missing.group(1).strip()} is missing from the files the gatekeeper signed"
    return f"signature verification failed: {text[:500]}"
